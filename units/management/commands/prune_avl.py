from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from units.models import AvlPosition


class Command(BaseCommand):
    help = "Delete AVL track points older than --days (retention). Units keep their last position."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=30, help="keep this many days of track (default 30)")
        parser.add_argument("--batch", type=int, default=50_000, help="rows deleted per statement")

    def handle(self, *args, days: int, batch: int, **options):
        if days < 1:
            raise CommandError("--days must be at least 1: the track of the last day feeds the map.")
        cutoff = timezone.now() - timedelta(days=days)
        total = 0
        while True:
            ids = list(
                AvlPosition.objects.filter(recorded_at__lt=cutoff).values_list("id", flat=True)[:batch]
            )
            if not ids:
                break
            deleted, _ = AvlPosition.objects.filter(id__in=ids).delete()
            total += deleted
            self.stdout.write(f"… {total} posiciones borradas")
        self.stdout.write(
            self.style.SUCCESS(f"Listo: {total} posiciones anteriores a {cutoff:%Y-%m-%d %H:%M} UTC")
        )
