"""The incident lifecycle, declared in one place.

    pending ──assign──▶ dispatched ──▶ en route ──▶ on scene ──last unit clears──▶ attended ──close──▶ closed
       ▲                    │              │                                         │    (awaiting closure)
       └── every unit cleared before anyone reached the scene ◀───────────────────┘ more units may be sent
    closed ──reopen (explicit, audited)──▶ pending

While units work the incident its status is the furthest stage any of them reached (a second unit still
en route does not pull an incident with a unit on scene back). When the last unit clears, an incident that
some unit reached since it was (re)opened is *attended* (awaiting closure), never pending again; one whose
units were all recalled before arriving is pending (it still needs a unit). Any open status may be closed.

incidents.services applies this table (every change passes `check_transition` and leaves a timeline
entry); the consoles read the timer of each status from `TIMERS` (through the page config) and its start
from `timer_since`; the KPIs read `OPEN_STATUSES`.
"""

from datetime import datetime

from django.utils.translation import gettext as _

from cad.errors import InvalidTransition
from incidents.models import AssignmentStatus, IncidentStatus

S = IncidentStatus
_WORKING = frozenset({S.DISPATCHED, S.EN_ROUTE, S.ON_SCENE})

TRANSITIONS: dict[str, frozenset[str]] = {
    S.PENDING: frozenset({*_WORKING, S.CLOSED}),
    S.DISPATCHED: frozenset({S.EN_ROUTE, S.ON_SCENE, S.PENDING, S.ATTENDED, S.CLOSED}),
    S.EN_ROUTE: frozenset({S.DISPATCHED, S.ON_SCENE, S.PENDING, S.ATTENDED, S.CLOSED}),
    S.ON_SCENE: frozenset({S.DISPATCHED, S.EN_ROUTE, S.ATTENDED, S.CLOSED}),
    S.ATTENDED: frozenset({*_WORKING, S.CLOSED}),
    S.CLOSED: frozenset({S.PENDING}),  # reopen only
}
OPEN_STATUSES = frozenset(s for s in S.values if s != S.CLOSED)
# Which target each status is judged by (settings.CAD key); statuses absent here show no running target.
TIMERS: dict[str, str] = {
    S.PENDING: "TARGET_DISPATCH_S",
    S.DISPATCHED: "TARGET_ON_SCENE_S",
    S.EN_ROUTE: "TARGET_ON_SCENE_S",
}
_ON_SCENE_OR_LATER = frozenset(
    {AssignmentStatus.ON_SCENE, AssignmentStatus.TRANSPORTING, AssignmentStatus.AT_HOSPITAL}
)


def check_transition(current: str, new: str) -> None:
    """Raise InvalidTransition (409) unless the table allows current → new (staying put is always fine)."""
    if new != current and new not in TRANSITIONS.get(current, frozenset()):
        raise InvalidTransition(
            _("Cambio de estado no permitido: %(from)s → %(to)s.")
            % {"from": S(current).label, "to": S(new).label},
            fields={"status": [f"{current} → {new}"]},
        )


def status_from_units(*, current: str, active_stages: set[str], reached_scene: bool) -> str:
    """The status an open incident has given its units: the stages of its active assignments and whether
    any unit reached the scene since it was (re)opened."""
    if current == S.CLOSED:
        return S.CLOSED
    if active_stages & _ON_SCENE_OR_LATER:
        return S.ON_SCENE
    if AssignmentStatus.EN_ROUTE in active_stages:
        return S.EN_ROUTE
    if active_stages:
        return S.DISPATCHED
    return S.ATTENDED if reached_scene else S.PENDING


def timer_since(*, reopened_at: datetime | None, call_arrived_at: datetime | None, opened_at: datetime):
    """When the running clock of an incident started: its reopening, else the call's arrival, else its
    opening (an incident opened by another state or a sensor has no call)."""
    return reopened_at or call_arrived_at or opened_at
