"""089 tip follow-up writes. Every function runs in one transaction, audits the access (TipAccess) and
records a domain event carrying only the folio and status (never the tip's contents).

Anonymity: nothing here takes a caller identifier. The follow-up folio and the short code are drawn
from `secrets` (never derived from the call or the caller); the code is kept only as a keyed hash.
"""

import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac
from django.utils.translation import gettext as _

from cad.errors import DomainError, InvalidTransition, NotFound
from cad.events import record_event
from cad.models import Center
from incidents.models import CallDisposition, IncidentType, Line
from incidents.services import take_call
from tips.models import TIP_TRANSITIONS, Authority, Tip, TipAccess, TipStatus, TipUpdate

CODE_DIGITS = 6
_HASH_SALT = "tips.follow-up-code"


class TooManyAttempts(DomainError):
    status = 429
    code = "too_many_attempts"


def _new_folio() -> str:
    """089-12345-67890: ten random digits, easy to read over the phone."""
    digits = f"{secrets.randbelow(10**10):010d}"
    return f"089-{digits[:5]}-{digits[5:]}"


def _new_code() -> str:
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def _code_hash(*, folio: str, code: str) -> str:
    return salted_hmac(_HASH_SALT, f"{folio}:{code}", algorithm="sha256").hexdigest()


def audit(*, center_id: int, user, action: str, tip: Tip | None = None, folio: str = "", detail: str = ""):
    return TipAccess.objects.create(
        center_id=center_id,
        at=timezone.now(),
        user=user,
        action=action,
        tip=tip,
        folio=tip.folio if tip else folio[:20],
        detail=detail[:200],
    )


def tip_summary(tip: Tip) -> dict:
    """What an event may carry: the folio and the follow-up state, never the contents."""
    return {
        "folio": tip.folio,
        "status": tip.status,
        "authority": tip.authority.code if tip.authority_id else None,
        "due_at": tip.due_at.isoformat() if tip.due_at else None,
    }


def _record(tip: Tip, type_: str) -> None:
    record_event(type=type_, center_id=tip.center_id, payload=tip_summary(tip))


@transaction.atomic
def receive_tip(
    *,
    center: Center,
    by,
    narrative: str,
    incident_type: IncidentType | None = None,
    address: str = "",
    lat: float | None = None,
    lon: float | None = None,
) -> tuple[Tip, str]:
    """Record an 089 tip: an anonymous 089 call (for the counts) plus the tip with its follow-up folio.
    Returns the tip and the plaintext short code, which is shown once (to be read to the tipster)."""
    call = take_call(
        center=center,
        by=by,
        line=Line.ANONYMOUS,
        disposition=CallDisposition.INFORMATIONAL,
        incident_type=incident_type,
        address=address,
        lat=lat,
        lon=lon,
    )
    now = timezone.now()
    code = _new_code()
    for _attempt in range(5):
        folio = _new_folio()
        try:
            with transaction.atomic():
                tip = Tip.objects.create(
                    center=center,
                    folio=folio,
                    code_hash=_code_hash(folio=folio, code=code),
                    call=call,
                    incident_type=incident_type,
                    narrative=narrative,
                    address=address,
                    lat=lat,
                    lon=lon,
                    created_at=now,
                    updated_at=now,
                    created_by=by,
                )
            break
        except IntegrityError:  # folio collision (1 in 10^10): draw again
            continue
    else:  # pragma: no cover - five collisions in a row
        raise DomainError(_("No se pudo asignar un folio; intente de nuevo."), status=503, code="folio_busy")
    TipUpdate.objects.create(tip=tip, at=now, by=by, status=tip.status, text=_("Denuncia recibida"))
    audit(center_id=center.id, user=by, action=TipAccess.Action.CREATE, tip=tip)
    _record(tip, "tip.received")
    return tip, code


def _tip_for_update(*, folio: str, center_id: int) -> Tip:
    try:
        return Tip.objects.select_for_update().get(folio=folio, center_id=center_id)
    except Tip.DoesNotExist:
        raise NotFound(_("No existe la denuncia %(folio)s.") % {"folio": folio}) from None


def _change(tip: Tip, *, by, text: str, fields: list[str], now: datetime) -> Tip:
    tip.updated_at = now
    tip.save(update_fields=[*fields, "updated_at"])
    TipUpdate.objects.create(tip=tip, at=now, by=by, status=tip.status, text=text)
    audit(center_id=tip.center_id, user=by, action=TipAccess.Action.UPDATE, tip=tip, detail=",".join(fields))
    _record(tip, "tip.updated")
    return tip


@transaction.atomic
def classify_tip(*, folio: str, center_id: int, by, incident_type: IncidentType, note: str = "") -> Tip:
    tip = _tip_for_update(folio=folio, center_id=center_id)
    tip.incident_type = incident_type
    text = _("Clasificada: %(code)s %(name)s") % {"code": incident_type.code, "name": incident_type.name}
    return _change(
        tip,
        by=by,
        text=f"{text}. {note}".strip(". ") if note else text,
        fields=["incident_type"],
        now=timezone.now(),
    )


@transaction.atomic
def route_tip(
    *, folio: str, center_id: int, by, authority_id: int, due_at: datetime | None = None, note: str = ""
) -> Tip:
    """Route (or re-route) a tip to a competent authority; due date defaults to the authority's term."""
    tip = _tip_for_update(folio=folio, center_id=center_id)
    if tip.status in (TipStatus.RESOLVED, TipStatus.DISMISSED):
        raise InvalidTransition(_("La denuncia %(folio)s ya está cerrada.") % {"folio": folio})
    authority = Authority.objects.filter(pk=authority_id, center_id=center_id, active=True).first()
    if authority is None:
        raise DomainError(
            _("Autoridad desconocida o inactiva."),
            fields={"authority": [_("Elija una autoridad de la lista.")]},
        )
    now = timezone.now()
    if due_at is not None and due_at <= now:
        raise DomainError(_("La fecha compromiso debe ser futura."), fields={"due_at": [_("Fecha pasada.")]})
    tip.authority = authority
    tip.routed_at = now
    tip.due_at = due_at or now + timedelta(days=authority.due_days)
    if tip.status == TipStatus.RECEIVED:
        tip.status = TipStatus.ROUTED
    text = _("Canalizada a %(authority)s") % {"authority": authority.name}
    return _change(
        tip,
        by=by,
        text=f"{text}. {note}" if note else text,
        fields=["authority", "routed_at", "due_at", "status"],
        now=now,
    )


@transaction.atomic
def set_tip_status(*, folio: str, center_id: int, by, status: str, note: str = "") -> Tip:
    tip = _tip_for_update(folio=folio, center_id=center_id)
    if status not in TIP_TRANSITIONS[TipStatus(tip.status)]:
        raise InvalidTransition(
            _("Cambio no permitido: %(from)s → %(to)s.")
            % {"from": tip.get_status_display(), "to": TipStatus(status).label},
            fields={"status": [status]},
        )
    tip.status = status
    text = TipStatus(status).label
    return _change(
        tip, by=by, text=f"{text}. {note}" if note else str(text), fields=["status"], now=timezone.now()
    )


def tip_status_for_callback(*, folio: str, code: str, center_id: int, by) -> Tip:
    """A tipster calls back with folio and code: returns the tip if both match. A wrong folio and a wrong
    code answer alike (no way to probe which folios exist); after too many failures on a folio within
    the window, look-ups of it are refused for a while. Every attempt is audited: deliberately not one
    transaction, so the audit row of a refused attempt is committed although the request fails."""
    window = timezone.now() - timedelta(minutes=settings.CAD["TIPS_LOOKUP_WINDOW_MIN"])
    failures = TipAccess.objects.filter(
        center_id=center_id, folio=folio[:20], action=TipAccess.Action.LOOKUP_FAILED, at__gte=window
    ).count()
    if failures >= settings.CAD["TIPS_LOOKUP_MAX_FAILURES"]:
        audit(
            center_id=center_id, user=by, action=TipAccess.Action.LOOKUP_FAILED, folio=folio, detail="locked"
        )
        raise TooManyAttempts(_("Demasiados intentos con este folio; intente más tarde."))
    tip = Tip.objects.select_related("authority").filter(folio=folio, center_id=center_id).first()
    if tip is None or not constant_time_compare(tip.code_hash, _code_hash(folio=folio, code=code)):
        audit(center_id=center_id, user=by, action=TipAccess.Action.LOOKUP_FAILED, folio=folio)
        raise NotFound(_("Folio o código incorrectos."), code="tip_not_found")
    audit(center_id=center_id, user=by, action=TipAccess.Action.LOOKUP, tip=tip)
    return tip
