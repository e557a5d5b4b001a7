"""Reads for consoles: panic buttons with their history, plate-reader hits and plate tracks."""

from datetime import timedelta

from django.conf import settings
from django.db.models import Count, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from cad.errors import NotFound
from sensors.models import Hotlist, LprHit, LprRead, LprReader, PanicButton, PanicSignal
from sensors.plates import plate_key


def panic_button_list(*, center_id: int) -> QuerySet[PanicButton]:
    return (
        PanicButton.objects.filter(center_id=center_id, active=True).select_related("agency").order_by("name")
    )


def panic_button_get(*, button_id: int, center_id: int) -> PanicButton:
    button = PanicButton.objects.select_related("agency").filter(pk=button_id, center_id=center_id).first()
    if button is None:
        raise NotFound(_("No existe el botón %(id)s.") % {"id": button_id})
    return button


def panic_history(*, button: PanicButton, limit: int = 50) -> QuerySet[PanicSignal]:
    return (
        PanicSignal.objects.filter(button=button)
        .select_related("incident")
        .order_by("-received_at", "-id")[:limit]
    )


def lpr_reader_list(*, center_id: int) -> QuerySet[LprReader]:
    return LprReader.objects.filter(center_id=center_id, active=True).order_by("code")


def lpr_hit_list(*, center_id: int, status: str | None = None) -> QuerySet[LprHit]:
    hits = LprHit.objects.filter(center_id=center_id).select_related("incident", "reader")
    return hits.filter(status=status) if status else hits


def lpr_hit_get(*, hit_id: int, center_id: int) -> LprHit:
    hit = LprHit.objects.select_related("incident", "reader").filter(pk=hit_id, center_id=center_id).first()
    if hit is None:
        raise NotFound(_("No existe la alerta %(id)s.") % {"id": hit_id})
    return hit


def plate_track(*, plate: str, center_id: int, hours: int | None = None) -> list[dict]:
    """Successive reads of a plate (confusion-tolerant), oldest first, with the reader's position: the
    track the dashboard map draws. Reads of our arches, plus hits a peer state reported for our entries."""
    hours = hours or settings.CAD["LPR_TRACK_HOURS"]
    since = timezone.now() - timedelta(hours=hours)
    key = plate_key(plate)
    points = [
        {
            "read_at": r.read_at,
            "plate": r.plate,
            "lat": r.reader.lat,
            "lon": r.reader.lon,
            "place": r.reader.name,
            "direction": r.reader.direction,
            "origin": "",
        }
        for r in LprRead.objects.filter(plate_key=key, read_at__gte=since, reader__center_id=center_id)
        .select_related("reader")
        .order_by("read_at")[:1000]
    ]
    points += [
        {
            "read_at": h.read_at,
            "plate": h.read_plate,
            "lat": h.lat,
            "lon": h.lon,
            "place": h.place,
            "direction": "",
            "origin": h.origin,
        }
        for h in LprHit.objects.filter(
            center_id=center_id, read_at__gte=since, origin__gt="", entry__plate_key=key
        )
    ]
    return sorted(points, key=lambda p: p["read_at"])


def hotlist_list(*, center_id: int) -> QuerySet[Hotlist]:
    return (
        Hotlist.objects.filter(center_id=center_id)
        .select_related("owner")
        .annotate(entry_count=Count("entries"))
        .order_by("kind", "name")
    )
