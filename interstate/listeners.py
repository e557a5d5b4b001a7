"""Interstate reacts to incident domain events inside the transaction of the change (cad.events.add_listener):

* a shared incident changed (an `incident.*` event, or a call joined it) → an `update` snapshot for each peer it is shared with (transactional outbox);
* an incident created or relocated → detection flags (`interstate.flagged`) and per-CNIE-type auto-escalation.

Cheap for everything else: events that are not `incident.*` return at once; an unshared incident costs one
indexed lookup (plus the detection check when it is created or moved).
"""

from django.db import connection
from django.utils.translation import gettext as _

from cad.errors import InvalidTransition
from cad.events import record_event
from cad.models import Event, EventStream
from incidents.models import Incident
from interstate import detection, services
from interstate.models import AutoEscalationPolicy, Escalation, EscalationKind, Peer

# The shares of an incident, in plain SQL: this runs for every incident event of the centre (the ORM's query
# building cost several times the lookup; docs/benchmarks.md, escalation).
_STATES = ", ".join(["%s"] * len(Escalation.SHARED_STATES))
_SHARED_SQL = (
    "SELECT e.id, e.peer_id FROM interstate_escalation e"  # noqa: S608 - placeholders only
    " JOIN incidents_incident i ON i.id = e.incident_id"
    f" WHERE i.folio = %s AND i.center_id = %s AND e.state IN ({_STATES})"
)


def on_event(event: Event) -> None:
    if event.stream != EventStream.Name.CONSOLE:
        return
    if event.type == "call.created":  # a call opened or joined an incident: the snapshot gains the call
        folio = event.payload.get("incident")
    elif event.type.startswith("incident."):
        folio = event.payload.get("folio")
    else:
        return
    if not folio:
        return
    if event.type == "incident.created" or "lat" in event.payload.get("changed", ()):
        _detect(event, folio)
    if event.type == "incident.created":
        return  # nothing can be shared yet (escalations are made after the incident exists)
    if event.type == "incident.closed":
        _refuse_closing_unanswered(folio, event.center_id)
    with connection.cursor() as cursor:  # ids only: write_update loads (and locks) what it sends
        cursor.execute(_SHARED_SQL, [folio, event.center_id, *Escalation.SHARED_STATES])
        shared = cursor.fetchall()
    for escalation_id, peer_id in shared:
        services.write_update(escalation_id=escalation_id, peer_id=peer_id)


def _refuse_closing_unanswered(folio: str, center_id: int) -> None:
    """A request for service still waiting for our answer keeps its incident open: closed unanswered, the
    requester would wait for an answer that never comes, believing the incident handled. Rejecting it (with
    the reason) closes it."""
    waiting = (
        Escalation.objects.filter(
            incident__folio=folio,
            incident__center_id=center_id,
            direction=Escalation.Direction.INBOUND,
            kind=EscalationKind.REQUEST_FOR_SERVICE,
            state=Escalation.State.PENDING,
        )
        .select_related("peer")
        .first()
    )
    if waiting is not None:
        raise InvalidTransition(
            _(
                "Antes de cerrar, responda la solicitud de %(peer)s: acéptela (Y) o recházela con el motivo (R)."
            )
            % {"peer": waiting.peer.name}
        )


def _detect(event: Event, folio: str) -> None:
    payload = event.payload
    origin = payload.get("origin_center") or ""
    flags = detection.flags_for(payload.get("lat"), payload.get("lon"), exclude_codes=(origin,))
    if not flags and event.type == "incident.created":
        return
    record_event(
        type="interstate.flagged", center_id=event.center_id, payload={"folio": folio, "peers": flags}
    )
    _auto_escalate(event, folio, flags, origin)


def _auto_escalate(event: Event, folio: str, flags: list[dict], origin: str) -> None:
    """Escalate per the policies whose CNIE prefix matches, to the flagged peers they name (or any)."""
    if not flags:
        return
    type_code = event.payload.get("type_code", "")
    prefixes = [type_code[:1], type_code[:3], type_code]
    flagged = {flag["peer"] for flag in flags}
    policies = AutoEscalationPolicy.objects.filter(enabled=True, type_prefix__in=prefixes).select_related(
        "peer"
    )
    wanted: dict[str, str] = {}
    # A request for service wins over a notice for the same peer, whichever policy is broader.
    for policy in sorted(policies, key=lambda policy: policy.kind != EscalationKind.REQUEST_FOR_SERVICE):
        targets = [policy.peer.code] if policy.peer_id else sorted(flagged)
        for code in targets:
            if code in flagged and code != origin:
                wanted.setdefault(code, policy.kind)
    if not wanted:
        return
    incident = Incident.objects.only("id", "created_by_id").get(folio=folio, center_id=event.center_id)
    # Once shared with a peer, a rule never shares again: a rejection or a cancel is a person's decision, which
    # a later location fix must not override (re-escalating is for a person too).
    already = set(
        Escalation.objects.filter(incident=incident, peer__code__in=wanted).values_list(
            "peer__code", flat=True
        )
    )
    enabled = set(Peer.objects.filter(code__in=wanted, enabled=True).values_list("code", flat=True))
    for code, kind in sorted(wanted.items()):
        if code in enabled and code not in already:
            services.escalate_incident(
                folio=folio,
                center_id=event.center_id,
                peer_code=code,
                kind=kind,
                reason=_("Escalamiento automático (política por tipo CNIE)"),
                by=incident.created_by,
            )
