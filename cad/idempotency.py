"""`Idempotency-Key` for POSTs that create things (e.g. POST /api/v1/calls/): a client that retries after a
cut connection sends the same key and gets the original answer; nothing is created twice.

The key row is inserted in the same transaction as the work. A concurrent repeat blocks on the unique key
until the first commits (then replays its answer) or rolls back (then does the work itself). The same key
with a different body is a 422.
"""

import hashlib
import json
from collections.abc import Callable

from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _
from rest_framework.response import Response

from cad.errors import DomainError
from cad.models import IdempotencyRecord

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 100


def _fingerprint(request) -> str:
    body = json.dumps(request.data, sort_keys=True, default=str)
    return hashlib.sha256(f"{request.method} {request.path}\n{body}".encode()).hexdigest()


def idempotent(request, work: Callable[[], Response]) -> Response:
    """Run `work` once per (user, Idempotency-Key); without the header, just run it."""
    key = request.headers.get(HEADER)
    if key is None:
        return work()
    if not 0 < len(key) <= MAX_KEY_LENGTH or not key.isprintable():
        raise DomainError(
            _("Idempotency-Key inválida (1 a %(n)d caracteres imprimibles).") % {"n": MAX_KEY_LENGTH},
            fields={HEADER: [_("Valor inválido.")]},
        )
    fingerprint = _fingerprint(request)
    with transaction.atomic():
        try:
            with transaction.atomic():
                record = IdempotencyRecord.objects.create(user=request.user, key=key, fingerprint=fingerprint)
        except IntegrityError:  # seen before (or committed meanwhile by a concurrent repeat)
            record = IdempotencyRecord.objects.get(user=request.user, key=key)
            if record.fingerprint != fingerprint:
                raise DomainError(
                    _("Esta Idempotency-Key ya se usó con otro contenido."),
                    code="idempotency_key_reused",
                    status=422,
                ) from None
            response = Response(record.response, status=record.status)
            response["Idempotent-Replayed"] = "true"
            return response
        response = work()
        record.status, record.response = response.status_code, response.data
        record.save(update_fields=["status", "response"])
        return response
