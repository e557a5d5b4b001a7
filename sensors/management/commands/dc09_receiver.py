"""Run the SIA DC-09 receiver for panic buttons (its own process; `python3 run.py` starts it)."""

import asyncio
import contextlib

from django.conf import settings
from django.core.management.base import BaseCommand

from sensors.dc09 import serve


class Command(BaseCommand):
    help = "Receptor SIA DC-09 (SIA-DCS y ADM-CID, AES opcional por cuenta) para botones de pánico."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=settings.CAD["DC09_HOST"])
        parser.add_argument("--port", type=int, default=settings.CAD["DC09_PORT"])
        parser.add_argument("--refresh", type=float, default=settings.CAD["DC09_ACCOUNTS_REFRESH_S"])

    def handle(self, *args, host, port, refresh, **options):
        self.stdout.write(f"Receptor DC-09 en {host}:{port} (TCP)")
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(host=host, port=port, refresh_s=refresh))
