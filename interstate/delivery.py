"""Delivery of the outbox: drain ONE stream's pending messages to its peer (interstate.outbox), in order,
under a lease, behind a per-peer circuit breaker.

* Lease: `OutboxStream.lease_until`/`lease_owner`, taken by a conditional UPDATE (free, expired, or already
  ours), renewed per message, so two workers never send one stream's messages at the same time. A drain that
  fails releases it: the circuit breaker, not the lease, paces the retries, and a worker killed during its
  retry's backoff leaves no lease behind to wait for (it would hold the stream until the broker redelivered
  the retry, after the visibility timeout). Only a drain killed mid-send leaves a lease, for at most
  CAD_INTERSTATE_LEASE_S.
* Order: messages in id order; the first failure stops the drain (PeerUnavailable: retried later), so a peer
  never sees message n+1 before n from us. Permanent refusals (4xx other than 401/403/408/409/429) mark the
  message dead (and its escalation failed), and the drain goes on.
* Circuit breaker per peer (`Peer.probe_after`, `failures`, `unavailable_since`): a send that finds the peer
  unavailable opens it; while open, drains of every stream of that peer stop before sending (no attempt, no
  audit row) and the sweeper hands the peer ONE stream when the backoff (1 s doubling, capped at
  CAD_INTERSTATE_RETRY_BACKOFF_MAX_S, with jitter) has passed: that drain claims the probe with a conditional
  UPDATE, so a peer that is down costs one request per interval whatever is queued for it. The first success
  closes the circuit and enqueues every stream with a pending message: everything goes, once, in order.
* Every request is audited (PeerRequestLog, direction outbound), failures included.
* A request that got no HTTP answer (timeout, refused connection…) is said in the centre's language, as a
  dispatcher reads it ("CDMX no respondió a tiempo (5 s)"): the text is stored (the share's `last_error`, the
  audit's detail) and written by a worker, or by whichever request's thread ran the drain.
"""

import errno
import json
import logging
import random
import uuid
from datetime import timedelta

import httpx
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, transaction
from django.db.backends.utils import CursorWrapper
from django.db.models import Q
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from cad.db import RowShape
from incidents.models import Incident
from interstate import outbox, signing
from interstate.models import Escalation, OutboxMessage, Peer, PeerRequestLog
from interstate.services import escalation_changed

logger = logging.getLogger(__name__)
MESSAGES_PATH = "/api/v1/interstate/messages"
WELL_KNOWN_PATH = "/.well-known/cad-peer"
RETRYABLE_STATUS = {401, 403, 408, 409, 425, 429}


class PeerUnavailable(Exception):
    """The peer could not take the message now (network, timeout, 5xx, auth being fixed…): retry later."""


class PeerRefused(Exception):
    """The peer refused the message for good (a 4xx about its content)."""


# --- HTTP -------------------------------------------------------------------------------------
_http_client: httpx.Client | None = None


def http_client() -> httpx.Client:
    """One pooled client per process (keep-alive connections to the peers; created after a worker forks)."""
    global _http_client
    if _http_client is None:
        _http_client = httpx.Client(timeout=settings.CAD_INTERSTATE_HTTP_TIMEOUT_S, follow_redirects=False)
    return _http_client


def signed_request(
    peer: Peer,
    method: str,
    path: str,
    *,
    action: str,
    body: bytes = b"",
    headers: dict | None = None,
    **audit_fields,
) -> httpx.Response:
    """One signed request to a peer, audited (`audit_fields`: request_id, incident_folio). Raises
    PeerUnavailable on network errors and timeouts, PeerRefused without our credential for it."""
    if not peer.has_outbound_credential:
        raise PeerRefused(
            _(
                "Sin credencial de envío para %(peer)s: nada se le envía sin firmar (interstate_peer rotate-secret)."
            )
            % {"peer": peer.code}
        )
    all_headers = {
        "Content-Type": "application/json",
        **(headers or {}),
        **signing.sign(
            key_id=peer.outbound_key_id, secret=peer.outbound_secret, method=method, path=path, body=body
        ),
    }
    audit = {
        "peer": peer,
        "peer_code": peer.code,
        "method": method,
        "path": path[:300],
        "action": action,
        **audit_fields,
    }
    try:
        response = http_client().request(
            method, peer.base_url + path, content=body or None, headers=all_headers
        )
    except httpx.HTTPError as exc:
        said = transport_error(peer.code, exc)
        # The exception's class stays in the audit, for support staff: short, after the readable text.
        _audit(
            **audit, status_code=None, result="network_error", detail=f"{said} [{type(exc).__name__}]"[:500]
        )
        raise PeerUnavailable(said) from exc
    _audit(
        **audit,
        status_code=response.status_code,
        result=_result_code(response),
        detail=_peer_said(response)[:500],
    )
    return response


TECHNICAL_DETAIL_MAX = 120


def transport_error(peer_code: str, exc: httpx.HTTPError) -> str:
    """A request that got no HTTP answer, as a dispatcher reads it, in the centre's language (LANGUAGE_CODE),
    not the active one: it is stored, and a drain may run in an English-speaking user's request."""
    detail = str(exc).strip() or type(exc).__name__
    if len(detail) > TECHNICAL_DETAIL_MAX:
        detail = detail[: TECHNICAL_DETAIL_MAX - 1] + "…"
    with translation.override(settings.LANGUAGE_CODE):
        if isinstance(exc, httpx.TimeoutException):
            seconds = f"{settings.CAD_INTERSTATE_HTTP_TIMEOUT_S:g}"
            return _("%(peer)s no respondió a tiempo (%(seconds)s s)") % {
                "peer": peer_code,
                "seconds": seconds,
            }
        if isinstance(exc, httpx.ConnectError) and _connection_refused(exc):
            return _("%(peer)s no acepta conexiones (¿caído?)") % {"peer": peer_code}
        if isinstance(exc, httpx.ConnectError):
            return _("no se pudo conectar con %(peer)s: %(detail)s") % {"peer": peer_code, "detail": detail}
        return _("se cortó la comunicación con %(peer)s: %(detail)s") % {"peer": peer_code, "detail": detail}


def _connection_refused(exc: BaseException) -> bool:
    """Whether the connection was refused (nothing listens there: the peer's server is down), by the socket's
    error among the exception's causes, else by httpx's text ("[Errno 111] Connection refused")."""
    seen: BaseException | None = exc
    for _depth in range(8):
        if seen is None:
            break
        if isinstance(seen, ConnectionRefusedError) or getattr(seen, "errno", None) == errno.ECONNREFUSED:
            return True
        seen = seen.__cause__ or seen.__context__
    return "refused" in str(exc).lower()


def _peer_said(response: httpx.Response) -> str:
    """What the peer said, for a person: its message and code (this API's error shape), or its answer's text
    and folio (a message's answer), else its text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str) and body["message"]:
        code = body.get("code")
        return f"{body['message'][:300]}" + (f" ({str(code)[:64]})" if code else "")
    if isinstance(body, dict) and isinstance(body.get("responseText"), str):
        folio = body.get("incident")
        return body["responseText"][:300] + (f" · {str(folio)[:64]}" if folio else "")
    return response.text[:300]


def _result_code(response: httpx.Response) -> str:
    if response.is_success:
        return "ok"
    try:
        return str(response.json().get("code") or "error")[:64]
    except (ValueError, AttributeError):
        return "error"


def _audit(**fields) -> None:
    PeerRequestLog.objects.create(direction=PeerRequestLog.Direction.OUTBOUND, **fields)


def _send(message: OutboxMessage) -> dict:
    body = json.dumps(message.body, separators=(",", ":"), ensure_ascii=False).encode()
    response = signed_request(
        message.peer,
        "POST",
        MESSAGES_PATH,
        action=message.kind,
        body=body,
        headers={signing.IDEMPOTENCY_KEY: str(message.idempotency_key)},
        request_id=str(message.body.get("requestId", ""))[:100],
        incident_folio=message.incident_folio or "",
    )
    if response.is_success:
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        return answer if isinstance(answer, dict) else {}
    summary = f"HTTP {response.status_code}: {_peer_said(response)}"
    if response.status_code >= 500 or response.status_code in RETRYABLE_STATUS:
        raise PeerUnavailable(summary)
    raise PeerRefused(summary)


# --- Lease ------------------------------------------------------------------------------------
# Plain SQL: these run two or three times per message on the delivery path, where the ORM's query building
# cost several times the statement itself (docs/benchmarks.md, escalation). Tables: OutboxStream, OutboxMessage.


def _execute(sql: str, params: list) -> CursorWrapper:
    cursor = connection.cursor()
    cursor.execute(sql, params)
    return cursor


def _lease_until() -> object:
    expiry = timezone.now() + timedelta(seconds=settings.CAD_INTERSTATE_LEASE_S)
    return connection.ops.adapt_datetimefield_value(expiry)


def _acquire(stream_id: int, owner: str) -> bool:
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with _execute(
        "UPDATE interstate_outboxstream SET lease_until = %s, lease_owner = %s"
        " WHERE id = %s AND (lease_until IS NULL OR lease_until < %s OR lease_owner = %s)",
        [_lease_until(), owner, stream_id, now, owner],
    ) as cursor:
        return cursor.rowcount == 1


def _release(stream_id: int, owner: str) -> bool:
    """Give the lease up; False if it was not ours (any more)."""
    with _execute(
        "UPDATE interstate_outboxstream SET lease_until = NULL, lease_owner = '' WHERE id = %s AND lease_owner = %s",
        [stream_id, owner],
    ) as cursor:
        return cursor.rowcount == 1


def _release_and_check(stream_id: int, owner: str) -> tuple[bool, bool]:
    """_release, and in the same statement whether the stream still has a pending message: (released, more)."""
    with _execute(
        "UPDATE interstate_outboxstream SET lease_until = NULL, lease_owner = '' WHERE id = %s AND lease_owner = %s"
        " RETURNING EXISTS (SELECT 1 FROM interstate_outboxmessage WHERE stream_id = %s AND state = %s)",
        [stream_id, owner, stream_id, OutboxMessage.State.PENDING],
    ) as cursor:
        row = cursor.fetchone()
    return (row is not None, bool(row and row[0]))


def _renew(stream_id: int, owner: str) -> bool:
    """Extend our lease in the caller's transaction (no extra commit per message); False if it is not ours."""
    with _execute(
        "UPDATE interstate_outboxstream SET lease_until = %s WHERE id = %s AND lease_owner = %s",
        [_lease_until(), stream_id, owner],
    ) as cursor:
        return cursor.rowcount == 1


_PENDING = RowShape((OutboxMessage, ()), (Peer, ("service_area",)), extra=1)
_PENDING_SQL = (
    f"SELECT {_PENDING.columns('m', 0)}, {_PENDING.columns('p', 1)}, i.folio"  # noqa: S608 - model columns
    " FROM interstate_outboxmessage m JOIN interstate_peer p ON p.id = m.peer_id"
    " LEFT JOIN interstate_escalation e ON e.id = m.escalation_id"
    " LEFT JOIN incidents_incident i ON i.id = e.incident_id"
    " WHERE m.stream_id = %s AND m.state = %s ORDER BY m.id LIMIT 1"
)


def _next_pending(stream_id: int) -> OutboxMessage | None:
    """The stream's next pending message with its peer (not its service area) and its incident's folio (for
    the audit; `incident_folio`), in one statement: the incident's own columns are not needed to send."""
    found = _PENDING.one(_PENDING_SQL, [stream_id, OutboxMessage.State.PENDING])
    if found is None:
        return None
    message, peer, message.incident_folio = found
    message.peer = peer
    return message


# --- Circuit breaker --------------------------------------------------------------------------
def backoff_s(failures: int) -> float:
    """Seconds until the next probe after `failures` consecutive failures: 1, 2, 4… capped, with ±20 % jitter
    (peers that failed together do not all come back in step)."""
    base = min(2.0 ** max(failures - 1, 0), settings.CAD_INTERSTATE_RETRY_BACKOFF_MAX_S)
    return base * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not cryptography


def _may_send(peer: Peer) -> bool:
    """Closed circuit: send. Open: only the one drainer that claims the probe (its time has come)."""
    if peer.probe_after is None:
        return True
    now = timezone.now()
    if peer.probe_after > now:
        return False
    # Claim the probe: move probe_after on, conditionally on the value we read (one claimant wins).
    return bool(
        Peer.objects.filter(pk=peer.pk, probe_after=peer.probe_after).update(
            probe_after=now + timedelta(seconds=backoff_s(peer.failures + 1))
        )
    )


def _peer_unavailable(peer: Peer) -> None:
    """Open (or keep open) the peer's circuit after a failed send."""
    now = timezone.now()
    failures = Peer.objects.values_list("failures", flat=True).get(pk=peer.pk) + 1
    Peer.objects.filter(pk=peer.pk).update(
        failures=failures,
        probe_after=now + timedelta(seconds=backoff_s(failures)),
        unavailable_since=peer.unavailable_since or now,
    )


def _peer_available(peer: Peer) -> None:
    """A send went through: if the circuit was open, close it and send everything that waited."""
    if peer.probe_after is None and not peer.failures:
        return
    closed = Peer.objects.filter(pk=peer.pk).exclude(failures=0, probe_after__isnull=True)
    if closed.update(failures=0, probe_after=None, unavailable_since=None):
        logger.info("interstate peer available again", extra={"peer": peer.code})
        outbox.enqueue_waiting(peer.pk)


# --- Drain ------------------------------------------------------------------------------------
def drain_stream(*, stream_id: int, owner: str | None = None) -> int:
    """Send the stream's pending messages in order; returns how many were delivered. Raises PeerUnavailable
    when the peer cannot take one now (the lease released). Returns quietly, sending nothing, while the peer's
    circuit is open and the probe is not ours."""
    owner = owner or f"local-{uuid.uuid4().hex}"
    delivered = 0
    if not _acquire(stream_id, owner):
        return delivered
    message = _next_pending(stream_id)
    while True:
        if message is None or not message.peer.can_send or not _may_send(message.peer):
            _released, more = _release_and_check(stream_id, owner)
            # A message committed while we were releasing would otherwise wait for the sweeper.
            if message is None and more and _acquire(stream_id, owner):
                message = _next_pending(stream_id)
                continue
            return delivered
        try:
            answer = _send(message)
        except PeerUnavailable as exc:
            _peer_unavailable(message.peer)
            _record_failure(message, str(exc), dead=False, owner=owner)
            _release(stream_id, owner)
            raise
        except PeerRefused as exc:
            _peer_available(message.peer)  # it answered: it is up, it just will not take this message
            if not _record_failure(message, str(exc), dead=True, owner=owner):
                return delivered  # the lease expired mid-drain: another drainer has the rest
        else:
            _peer_available(message.peer)
            delivered += 1
            if not _record_delivery(message, answer, owner=owner):
                return delivered  # nothing left (lease released), or the lease was lost mid-drain
        message = _next_pending(stream_id)


def drain_escalation(*, escalation_id: int, **options) -> int:
    """Drain the stream of one escalation (tests, demos, a supervisor's shell): see drain_stream."""
    stream_id = Escalation.objects.values_list("stream_id", flat=True).get(pk=escalation_id)
    return drain_stream(stream_id=stream_id, **options) if stream_id else 0


@transaction.atomic
def _record_delivery(message: OutboxMessage, answer: dict, *, owner: str) -> bool:
    """Mark the message delivered and, in the same transaction, release the stream's lease, or keep it when
    another message is pending. True: keep draining (the lease is ours). False: nothing left, or the lease
    was lost mid-drain (another drainer has the rest).

    Released first, checked second: a message committed after the check finds the lease free (its drain
    waits for this commit on the stream row, then takes it); one committed before the check is seen here."""
    now = timezone.now()
    escalation = None
    if message.escalation_id:  # its incident first, then the escalation: the product's lock order
        escalation = _lock_escalation_of(message)
    _execute(
        "UPDATE interstate_outboxmessage SET state = %s, delivered_at = %s, attempts = %s, last_error = ''"
        " WHERE id = %s",
        [
            OutboxMessage.State.DELIVERED,
            connection.ops.adapt_datetimefield_value(now),
            message.attempts + 1,
            message.pk,
        ],
    ).close()
    if escalation is not None:
        fields = []
        if escalation.last_error:
            escalation.last_error = ""
            fields.append("last_error")
        request_kinds = (OutboxMessage.Kind.REQUEST_FOR_SERVICE, OutboxMessage.Kind.REQUEST_AWARENESS)
        if message.kind in request_kinds and escalation.delivered_at is None:
            escalation.delivered_at = now  # even when the peer's answer got here first (response times)
            fields.append("delivered_at")
        if message.kind in request_kinds and escalation.state in (
            Escalation.State.PENDING,
            Escalation.State.FAILED,
        ):
            escalation.state = Escalation.State.SENT
            escalation.remote_folio = str(answer.get("incident") or "")[:64]
            fields += ["state", "remote_folio"]
        if fields:
            # Drains go in order and stop at a failure, so a message after this one was never tried.
            escalation_changed(escalation, *fields, attempts=0)
    released, more = _release_and_check(message.stream_id, owner)
    return released and more and _acquire(message.stream_id, owner)


@transaction.atomic
def _record_failure(message: OutboxMessage, error: str, *, dead: bool, owner: str) -> bool:
    now = timezone.now()
    escalation = _lock_escalation_of(message) if message.escalation_id else None
    OutboxMessage.objects.filter(pk=message.pk).update(
        attempts=message.attempts + 1,
        last_error=error[:2000],
        next_attempt_at=now + timedelta(seconds=settings.CAD_INTERSTATE_RETRY_BACKOFF_MAX_S),
        state=OutboxMessage.State.DEAD if dead else OutboxMessage.State.PENDING,
    )
    if escalation is not None:
        fields = []
        if escalation.last_error != error[:2000]:
            escalation.last_error = error[:2000]
            fields.append("last_error")
        if dead and escalation.state not in (Escalation.State.CANCELLED, Escalation.State.FAILED):
            escalation.state = Escalation.State.FAILED
            fields.append("state")
        # Every failed attempt, even with the same error: the console shows the attempt count live.
        escalation_changed(escalation, *fields, attempts=message.attempts + 1)
    logger.warning(
        "interstate delivery failed",
        extra={"peer": message.peer.code, "message_id": message.pk, "dead": dead, "error": error[:300]},
    )
    return _renew(message.stream_id, owner)


_ESCALATION = RowShape((Escalation, ()))
_ESCALATION_SQL = f"SELECT {_ESCALATION.columns('e', 0)} FROM interstate_escalation e WHERE e.id = %s"  # noqa: S608 - model columns
_ITS_INCIDENT_SQL = (
    "SELECT id, folio, center_id FROM incidents_incident"
    " WHERE id = (SELECT incident_id FROM interstate_escalation WHERE id = %s)"
)
LIGHT_INCIDENT = ("id", "folio", "center_id")


def _lock_escalation_of(message: OutboxMessage) -> Escalation | None:
    """The message's escalation locked as services.lock_escalation locks it (its incident first: the product's
    lock order), in plain SQL: with the message's peer and only its incident's folio and centre, which the
    summary and the event name it by (the other columns deferred)."""
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    with _execute(_ITS_INCIDENT_SQL + lock, [message.escalation_id]) as cursor:
        incident = cursor.fetchone()
    found = _ESCALATION.one(_ESCALATION_SQL + lock, [message.escalation_id]) if incident else None
    if found is None:
        return None
    escalation = found[0]
    escalation.incident = Incident.from_db(DEFAULT_DB_ALIAS, LIGHT_INCIDENT, incident)
    escalation.peer = message.peer
    return escalation


# --- Sweeper ----------------------------------------------------------------------------------
def due_streams(*, limit: int = 500) -> list[int]:
    """Streams with a pending message that is due (written SWEEP_AFTER_S ago and never sent, or its backoff
    passed after a failure), whose peer is enabled and whose lease nobody holds. A peer whose circuit is open
    gets nothing until its probe time, then ONE stream (its oldest due message's): the probe."""
    now = timezone.now()
    due = (
        OutboxMessage.objects.filter(
            state=OutboxMessage.State.PENDING, next_attempt_at__lte=now, peer__enabled=True
        )
        # no credential yet (Peer.has_outbound_credential): it waits (peer_set_outbound_credentials)
        .exclude(peer__outbound_key_id="")
        .exclude(peer__outbound_secret_encrypted="")
        .filter(Q(stream__lease_until__isnull=True) | Q(stream__lease_until__lt=now))
    )
    streams = list(
        due.filter(peer__probe_after__isnull=True).values_list("stream_id", flat=True).distinct()[:limit]
    )
    for peer_id in Peer.objects.filter(enabled=True, probe_after__lte=now).values_list("id", flat=True):
        probe = due.filter(peer_id=peer_id).order_by("id").values_list("stream_id", flat=True).first()
        if probe is not None:
            streams.append(probe)
    return streams


# --- Well-known document ------------------------------------------------------------------------
def fetch_peer_document(peer: Peer) -> dict:
    """GET the peer's /.well-known/cad-peer (signed). Raises PeerUnavailable / PeerRefused."""
    response = signed_request(peer, "GET", WELL_KNOWN_PATH, action="well-known")
    if not response.is_success:
        raise PeerRefused(f"HTTP {response.status_code}: {response.text[:300]}")
    try:
        document = response.json()
    except ValueError:
        raise PeerRefused(_("el documento /.well-known/cad-peer del centro par no es JSON")) from None
    if not isinstance(document, dict):
        raise PeerRefused(_("el documento /.well-known/cad-peer del centro par no es un objeto JSON"))
    return document
