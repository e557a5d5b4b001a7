#!/bin/sh
# One image, several roles. Usage: entrypoint.sh web|worker|beat|migrate|<any command>
set -eu

case "${1:-web}" in
  web)
    # Daphne serves HTTP and websockets; TLS terminates at the reverse proxy (X-Forwarded-Proto).
    # cad.serve: WEB_PROCS Daphne processes (default one per CPU) serve one address.
    if [ -n "${WEB_PROCS:-}" ]; then set -- --procs "$WEB_PROCS"; else set --; fi
    # Forwarded headers are believed only from CAD_TRUSTED_PROXIES (cad.proxies).
    exec python -m cad.serve --host 0.0.0.0 --port "${PORT:-8000}" "$@"
    ;;
  worker)
    exec celery -A cad worker -l "${LOG_LEVEL:-INFO}" --concurrency "${CELERY_CONCURRENCY:-4}"
    ;;
  beat)
    exec celery -A cad beat -l "${LOG_LEVEL:-INFO}" -s /tmp/celerybeat-schedule
    ;;
  migrate)
    # One-shot: schema, then (optionally) the demo data. Safe to run on every deploy.
    python manage.py migrate --noinput
    if [ "${SEED_DEMO:-0}" = "1" ]; then
      python manage.py seed_demo --units "${SEED_DEMO_UNITS:-200}"
    fi
    ;;
  simulate-avl)
    exec python manage.py simulate_avl --interval "${AVL_SIM_INTERVAL:-5}"
    ;;
  *)
    exec "$@"
    ;;
esac
