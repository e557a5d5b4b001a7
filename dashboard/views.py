"""Supervisor pages: the live map, the KPI page and the other centres' page (shares in trouble, peers, the
audit of every peer request). Thin: permission check, reads, render."""

from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts.permissions import SUPERVISION_ROLES
from cad.db import replica_reads
from dashboard.api import KpiApi
from dashboard.charts import bar_chart
from dashboard.kpis import METRIC_LABELS, METRICS, rollup_kpis
from dashboard.rollups import rollup_status
from dashboard.targets import kpi_targets
from incidents.models import IncidentStatus, Priority
from interstate.models import Escalation, PeerRequestLog
from interstate.selectors import (
    AUDIT_ACTIONS,
    audit_entries,
    peer_list_for_admin,
    response_times,
    shares_in_trouble,
)
from units.models import Agency, UnitStatus

AUDIT_PAGE = 100  # entries per page of the audit (older ones: the "más antiguas" link)

# The audit's result codes (PeerRequestLog.result: "ok", "network_error" or the refusal's code, ours or the
# peer's) as a supervisor reads them; the page keeps the code beside the label (support staff, the filter).
AUDIT_RESULTS = {
    # The request went through (not "accepted": a rejection is processed too).
    "ok": gettext_lazy("Procesada"),
    "error": gettext_lazy("Error"),
    "network_error": gettext_lazy("Sin respuesta (red)"),
    "not_signed": gettext_lazy("Sin firma"),
    "unknown_key": gettext_lazy("Clave desconocida"),
    "peer_disabled": gettext_lazy("Enlace deshabilitado"),
    "stale_timestamp": gettext_lazy("Hora fuera de la ventana"),
    "bad_signature": gettext_lazy("Firma inválida"),
    "replayed": gettext_lazy("Mensaje repetido"),
    "duplicate_request": gettext_lazy("Solicitud duplicada"),
    "idempotency_key_required": gettext_lazy("Falta la clave de idempotencia"),
    "invalid_message": gettext_lazy("Mensaje inválido"),
    "unknown_kind": gettext_lazy("Clase de mensaje desconocida"),
    "unsupported_kind": gettext_lazy("Clase de mensaje no admitida"),
    "unknown_incident_type": gettext_lazy("Tipo de incidente desconocido"),
    "not_shared": gettext_lazy("No compartido"),
    "not_found": gettext_lazy("No existe"),
    "permission_denied": gettext_lazy("Sin permiso"),
    "not_authenticated": gettext_lazy("Sin autenticar"),
    "authentication_failed": gettext_lazy("Autenticación fallida"),
    "throttled": gettext_lazy("Demasiadas peticiones"),
}
# The protocol's answers (responseText: ours and a peer running this product, which answers in these
# words whatever its language), as a supervisor reads them. Outbound entries add " · <the peer's folio>".
AUDIT_DETAILS = {
    "queued for a dispatcher": gettext_lazy("En espera de un despachador"),
    "awareness recorded": gettext_lazy("Aviso registrado"),
    "applied": gettext_lazy("Aplicada"),
    "stale": gettext_lazy("Ignorada: ya tenía una más reciente"),
    "ignored: share ended": gettext_lazy("Ignorada: ya no se comparte"),
    "cancelled": gettext_lazy("Cancelación registrada"),
    "response recorded": gettext_lazy("Respuesta registrada"),
    "acceptance recorded": gettext_lazy("Aceptación registrada"),
    "rejection recorded": gettext_lazy("Rechazo registrado"),
    "nothing to cancel": gettext_lazy("Nada que cancelar: la solicitud no había llegado"),
    "published": gettext_lazy("Alerta publicada"),
    "withdraw": gettext_lazy("Alerta retirada"),
    "expire": gettext_lazy("Alerta vencida"),
    "ignored: alert ended": gettext_lazy("Ignorado: la alerta ya terminó"),
    "sighting recorded": gettext_lazy("Avistamiento registrado"),
}


def audit_detail_label(detail: str) -> str | None:
    """A known detail as a supervisor reads it (the folio after " · " kept), else None (shown as it is)."""
    text, separator, folio = detail.partition(" · ")
    label = AUDIT_DETAILS.get(text)
    return None if label is None else f"{label}{separator}{folio}"


def _require_supervisor(request) -> None:
    if not (request.user.has_role(*SUPERVISION_ROLES) and request.user.center_id):
        raise PermissionDenied


def _tiles(total: dict | None) -> list[dict]:
    """One tile per metric: p50 / p90 and the compliance of its targets."""
    targets = kpi_targets()
    tiles = []
    for metric in METRICS:
        block = (total or {}).get("metrics", {}).get(metric, {})
        tiles.append(
            {
                "metric": metric,
                "label": METRIC_LABELS[metric],
                "n": block.get("n", 0),
                "insufficient": block.get("insufficient", True),
                "min_sample": settings.CAD["KPI_MIN_SAMPLE"],
                "p50": block.get("p50"),
                "p90": block.get("p90"),
                "compliance": [
                    {
                        "label": targets[key]["label"],
                        "share": None if c["share"] is None else round(c["share"] * 100, 1),
                        "goal": round(c["goal"] * 100),
                        "met": c["met"],
                        "n": c["n"],
                        "overdue": c["overdue"],
                        "insufficient": c["n"] < settings.CAD["KPI_MIN_SAMPLE"],
                    }
                    for key, c in block.get("compliance", {}).items()
                ],
            }
        )
    return tiles


def _rollups_updated():
    """When the hourly rollups last ran, as an aware datetime (templates show it in the centre's zone)."""
    last = rollup_status()["last_run_at"]
    return datetime.fromisoformat(last) if last else None


def _last_24h():
    end = timezone.now()
    return end - timedelta(hours=24), end


@login_required
def dashboard_page(request):
    _require_supervisor(request)
    start, end = _last_24h()
    totals = rollup_kpis(center_id=request.user.center_id, start=start, end=end)
    total = totals[0] if totals else None
    tiles_conf = settings.LEAFLET_CONFIG.get("TILES") or []
    context = {
        "tiles": _tiles(total),
        "total": total,
        "rollups_updated": _rollups_updated(),
        "dashboard_url": reverse("dashboard"),
        "map_config": {
            "center": list(settings.LEAFLET_CONFIG.get("DEFAULT_CENTER", (19.35, -99.4))),
            "zoom": settings.LEAFLET_CONFIG.get("DEFAULT_ZOOM", 9),
            "tiles": [{"name": str(n), "url": u, "options": o} for n, u, o in tiles_conf],
            "attribution": settings.LEAFLET_CONFIG.get("ATTRIBUTION_PREFIX", ""),
            "staleSeconds": settings.CAD["AVL_STALE_SECONDS"],
            "statuses": {s.value: str(s.label) for s in UnitStatus},
            "priorities": {p.value: str(p.label) for p in Priority},
            "incidentStatuses": {s.value: str(s.label) for s in IncidentStatus},
            "agencyKinds": {k.value: str(k.label) for k in Agency.Kind},
            "text": {
                "open": _("Abrir en consola"),
                "units": _("unidades"),
                "incidents": _("incidentes"),
                "stale": _("posición vieja"),
                "noUnits": _("Sin unidades en el radio."),
                "track": _("Recorrido"),
                "points": _("puntos"),
                "open_ws": _("En vivo"),
                "closed_ws": _("Reconectando…"),
                "refused_ws": _("Sin permiso"),
                "connecting": _("Conectando…"),
                "legend": _("Simbología"),
                "idle": _("Fuera de servicio / franco"),
                "assigned": _("Unidad asignada (anillo amarillo)"),
                "incident": _("Incidente"),
                "handled_by": _("Lo atiende %(peer)s"),
                "origin": _("Escalado por %(peer)s, folio %(folio)s"),
            },
        },
    }
    return render(request, "dashboard/map.html", context)


@login_required
def kpi_page(request):
    _require_supervisor(request)
    form = KpiApi.KpiInput(data={k: v for k, v in request.GET.items() if v})
    errors = {}
    if form.is_valid():
        params = form.validated_data
    else:
        errors = form.errors
        start, end = _last_24h()
        params = {"start": start, "end": end, "group_by": None, "exact": False}
    compute_scope = {"center_id": request.user.center_id, "start": params["start"], "end": params["end"]}
    group_by = params["group_by"] or "line"
    with replica_reads():
        totals = rollup_kpis(**compute_scope)
        by_hour = {g["key"][0]: g for g in rollup_kpis(**compute_scope, group_by="hour")}
        groups = rollup_kpis(**compute_scope, group_by=group_by)
    targets = kpi_targets()

    def goal_of(key):
        """A target's seconds and its label on the chart ("meta 120 s"); no target, no line."""
        seconds = targets.get(key, {}).get("seconds")
        return {
            "goal": seconds,
            "goal_label": _("meta %(seconds)s s") % {"seconds": seconds} if seconds else "",
        }

    def hourly(metric):
        return [
            (f"{h:02d}", by_hour[h]["metrics"][metric]["p90"] if h in by_hour else None) for h in range(24)
        ]

    charts = [
        bar_chart(
            hourly("answer"),
            title=_("Contestación p90 por hora del día"),
            **goal_of("answer_15s"),
        ),
        bar_chart(
            hourly("dispatch"),
            title=_("Despacho p90 por hora del día"),
            **goal_of("dispatch"),
        ),
        bar_chart(
            [(g["label"][:14], g["metrics"]["total"]["p90"]) for g in groups],
            title=_("Respuesta total p90 por grupo"),
            **goal_of("on_scene"),
        ),
    ]
    local_start, local_end = timezone.localtime(params["start"]), timezone.localtime(params["end"])
    context = {
        "tiles": _tiles(totals[0] if totals else None),
        "total": totals[0] if totals else None,
        "groups": groups,
        "group_by": group_by,
        "group_choices": [
            ("line", _("Línea")),
            ("tipo", _("Tipo CNIE")),
            ("state", _("Entidad")),
            ("jurisdiction", _("Municipio")),
            ("hour", _("Hora del día")),
        ],
        "metrics": [(m, METRIC_LABELS[m]) for m in METRICS],
        "charts": charts,
        "errors": errors,
        "from": local_start.strftime("%Y-%m-%dT%H:%M"),
        "to": local_end.strftime("%Y-%m-%dT%H:%M"),
        "month": local_start.strftime("%Y-%m"),
        "rollups_updated": _rollups_updated(),
        "dashboard_url": reverse("dashboard"),
    }
    return render(request, "dashboard/kpis.html", context)


@login_required
def interstate_page(request):
    """Other centres, for a supervisor: the shares whose delivery failed (with the peer's answer), each peer's
    state (enabled, not taking our messages since…, messages waiting) and the audit of every peer request,
    inbound and outbound, refused ones included, filterable, with seconds (many share a minute)."""
    _require_supervisor(request)
    peer = request.GET.get("peer", "").strip().upper()[:16]
    direction = request.GET.get("direction", "")
    direction = direction if direction in PeerRequestLog.Direction.values else ""
    result = request.GET.get("result", "").strip()[:64]
    before = request.GET.get("before", "")
    before = (
        int(before) if before.isascii() and before.isdigit() and len(before) < 19 else None
    )  # "²" is a digit
    with replica_reads():
        peers = list(peer_list_for_admin())
        entries = list(
            audit_entries(
                peer=peer or None, direction=direction or None, result=result or None, before=before
            )[: AUDIT_PAGE + 1]
        )
        trouble = list(shares_in_trouble(center_id=request.user.center_id))
        times = response_times(center_id=request.user.center_id, since=_last_24h()[0])
    for row in times:
        row["direction_label"] = Escalation.Direction(row["direction"]).label
    older = entries[AUDIT_PAGE - 1].id if len(entries) > AUDIT_PAGE else None
    for entry in entries:
        entry.action_label = AUDIT_ACTIONS.get(entry.action, entry.action)
        entry.result_label = AUDIT_RESULTS.get(entry.result)
        entry.detail_label = audit_detail_label(entry.detail)
    return render(
        request,
        "dashboard/interstate.html",
        {
            "peers": peers,
            "entries": entries[:AUDIT_PAGE],
            "trouble": trouble,
            "times": times,
            "directions": PeerRequestLog.Direction.choices,
            "filters": {"peer": peer, "direction": direction, "result": result},
            "older": older,
        },
    )
