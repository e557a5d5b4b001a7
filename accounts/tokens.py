"""API tokens (django-rest-knox): issue, rotate, revoke, list.

The database keeps only a SHA-512 digest of each token and its first characters (`token_key`, to find the
row); the token itself exists once, in the return value of `issue_token` / `rotate_tokens`. Every token has
an expiry (settings.CAD_TOKEN_TTL_DAYS unless told otherwise). Callers (the `service_token` command, the
demo seed, tests, benchmarks) use these helpers instead of knox's manager.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from knox.models import AuthToken

PREFIX_SHOWN = 8  # characters of a token shown by `list` and the admin (never more: it is part of the secret)


def default_ttl() -> timedelta | None:
    days = settings.CAD_TOKEN_TTL_DAYS
    return timedelta(days=days) if days > 0 else None


def issue_token(user, ttl: timedelta | None = None) -> str:
    """A new token for `user`, valid for `ttl` (default settings.CAD_TOKEN_TTL_DAYS). Returns the plaintext,
    which is not stored anywhere: hand it to the device and forget it."""
    _instance, token = AuthToken.objects.create(user=user, expiry=ttl or default_ttl())
    return token


def rotate_tokens(user, *, grace: timedelta, ttl: timedelta | None = None) -> str:
    """Issue a new token and make the user's other live tokens expire `grace` from now (at once when zero),
    so a device can be reconfigured without downtime. Returns the new token's plaintext."""
    now = timezone.now()
    with transaction.atomic():
        AuthToken.objects.filter(user=user, expiry__lte=now).delete()  # already dead
        old = AuthToken.objects.filter(user=user)
        deadline = now + grace
        old.filter(expiry__isnull=True).update(expiry=deadline)
        old.filter(expiry__gt=deadline).update(expiry=deadline)
        return issue_token(user, ttl)


def revoke_tokens(user, *, prefix: str = "") -> int:
    """Delete the user's tokens (only those starting with `prefix` when given); returns how many."""
    rows = AuthToken.objects.filter(user=user)
    if prefix:
        rows = rows.filter(token_key__startswith=prefix)
    count, _by_model = rows.delete()
    return count


@dataclass(frozen=True)
class TokenInfo:
    username: str
    prefix: str
    created: datetime
    expiry: datetime | None

    @property
    def expired(self) -> bool:
        return self.expiry is not None and self.expiry <= timezone.now()


def list_tokens(users) -> list[TokenInfo]:
    """The tokens of `users` (a queryset), newest first: prefix, created, expiry. Never the secret."""
    rows = (
        AuthToken.objects.filter(user__in=users).select_related("user").order_by("user__username", "-created")
    )
    return [
        TokenInfo(row.user.username, row.token_key[:PREFIX_SHOWN], row.created, row.expiry) for row in rows
    ]
