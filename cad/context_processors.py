"""Template context every page gets."""

from django.conf import settings


def csrf_cookie(request) -> dict:
    """The CSRF cookie's name (per instance, settings.CSRF_COOKIE_NAME), for the scripts that send the token."""
    return {"csrf_cookie_name": settings.CSRF_COOKIE_NAME}
