"""Heartbeat supervision of panic buttons and plate readers: a periodic check declares silent devices
offline and a signal brings them back, each transition raising a supervisor alert on the console stream
(`sensor.offline` / `sensor.online`) in the transaction of the change."""

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from cad.events import record_event
from sensors.models import LprReader, PanicButton, PanicSignal, SupervisedDevice

MISSED_BEATS = 2.5
KINDS = {PanicButton: "panic_button", LprReader: "lpr_reader"}


def device_summary(device: SupervisedDevice) -> dict:
    return {
        "kind": KINDS[type(device)],
        "id": device.id,
        "name": device.name,
        "lat": device.lat,
        "lon": device.lon,
        "address": device.address,
        "online": device.online,
        "last_seen_at": device.last_seen_at.isoformat() if device.last_seen_at else None,
    }


def _transition(device: SupervisedDevice, *, online: bool, at: datetime) -> None:
    device.online = online
    device.save(update_fields=["online", "last_seen_at"])
    if isinstance(device, PanicButton):
        PanicSignal.objects.create(
            button=device,
            kind=PanicSignal.Kind.ONLINE if online else PanicSignal.Kind.OFFLINE,
            transport=PanicSignal.Transport.SUPERVISION,
            received_at=at,
        )
    record_event(
        type="sensor.online" if online else "sensor.offline",
        center_id=device.center_id,
        payload=device_summary(device),
    )


def mark_seen(device: SupervisedDevice, *, at: datetime) -> None:
    """A signal from a locked device: move its heartbeat; an offline device comes back (alert)."""
    device.last_seen_at = at
    if not device.online:
        _transition(device, online=True, at=at)
    else:
        type(device).objects.filter(pk=device.pk).update(last_seen_at=at)


def _silent(device: SupervisedDevice, now: datetime) -> bool:
    seen = device.last_seen_at or device.registered_at
    return seen < now - timedelta(seconds=device.heartbeat_s * MISSED_BEATS)


@transaction.atomic
def declare_silent_offline(*, now: datetime | None = None) -> int:
    """Mark offline every active online device whose last signal (or registration) is older than
    MISSED_BEATS heartbeat intervals. Candidates are found without locks, then locked and re-checked
    (a signal may have arrived meanwhile); rows another transaction holds are skipped. Idempotent."""
    now = now or timezone.now()
    changed = 0
    for model in KINDS:
        fields = ("id", "heartbeat_s", "last_seen_at", "registered_at")
        candidates = [
            d.id for d in model.objects.filter(active=True, online=True).only(*fields) if _silent(d, now)
        ]
        for device in (
            model.objects.select_for_update(skip_locked=True).filter(id__in=candidates).order_by("id")
        ):
            if device.online and _silent(device, now):
                _transition(device, online=False, at=now)
                changed += 1
    return changed
