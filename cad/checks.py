"""Startup guards: a server never runs on the public built-in secret key with DEBUG off."""

from django.conf import settings
from django.core.checks import Error, Tags, register
from django.core.exceptions import ImproperlyConfigured

MESSAGE = (
    "DJANGO_SECRET_KEY is not set and DEBUG is off: the built-in key is public (sessions and CSRF tokens "
    "could be forged). Set DJANGO_SECRET_KEY to a long random value (or DJANGO_DEBUG=true for development)."
)


def uses_builtin_secret_key() -> bool:
    return not settings.DEBUG and settings.SECRET_KEY == settings.BUILTIN_SECRET_KEY


def require_secret_key() -> None:
    """Called where a server starts (cad.asgi): refuse to serve on the built-in key."""
    if uses_builtin_secret_key():
        raise ImproperlyConfigured(MESSAGE)


@register(Tags.security, deploy=True)
def secret_key_check(app_configs, **kwargs):
    return [Error(MESSAGE, id="cad.E001")] if uses_builtin_secret_key() else []
