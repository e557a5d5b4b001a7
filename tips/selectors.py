"""Reads of 089 tips. Each read of contents is audited (TipAccess) by the function that serves it."""

from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from cad.errors import NotFound
from tips.models import Authority, Tip, TipAccess, TipStatus
from tips.services import audit

OPEN_STATUSES = (TipStatus.RECEIVED, TipStatus.ROUTED, TipStatus.IN_PROGRESS)


def tip_list(
    *, user, status: str | None = None, authority: str | None = None, overdue: bool = False
) -> QuerySet[Tip]:
    """The follow-up queue of the user's centre (audited as one list access)."""
    tips = Tip.objects.filter(center_id=user.center_id).select_related("authority", "incident_type")
    if status:
        tips = tips.filter(status=status)
    if authority:
        tips = tips.filter(authority__code=authority)
    if overdue:
        tips = tips.filter(status__in=OPEN_STATUSES, due_at__lt=timezone.now())
    audit(
        center_id=user.center_id,
        user=user,
        action=TipAccess.Action.LIST,
        detail=f"status={status or ''} authority={authority or ''} overdue={int(overdue)}",
    )
    return tips.order_by("due_at", "created_at")


def tip_get(*, folio: str, user) -> Tip:
    tip = (
        Tip.objects.select_related("authority", "incident_type")
        .prefetch_related("updates__by")
        .filter(folio=folio, center_id=user.center_id)
        .first()
    )
    if tip is None:
        raise NotFound(_("No existe la denuncia %(folio)s.") % {"folio": folio})
    audit(center_id=user.center_id, user=user, action=TipAccess.Action.READ, tip=tip)
    return tip


def authority_list(*, center_id: int) -> QuerySet[Authority]:
    return Authority.objects.filter(center_id=center_id, active=True).order_by("name")


def tip_access_log(*, center_id: int, folio: str | None = None) -> QuerySet[TipAccess]:
    log = TipAccess.objects.filter(center_id=center_id).select_related("user")
    return log.filter(folio=folio) if folio else log
