"""Per-request language and time zone.

Language: the user's choice (the language cookie set by the selector, else the one saved on the user),
else es-MX. The browser's Accept-Language is deliberately ignored: a C4 works in Spanish whatever the
workstation's browser says. Time zone: the user's centre's (Center.timezone), else settings.TIME_ZONE.
"""

from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone, translation
from django.utils.cache import patch_vary_headers


def chosen_language(request) -> str:
    supported = dict(settings.LANGUAGES)
    cookie = request.COOKIES.get(settings.LANGUAGE_COOKIE_NAME)
    if cookie in supported:
        return cookie
    user = getattr(request, "user", None)
    saved = getattr(user, "language", "") if user is not None and user.is_authenticated else ""
    return saved if saved in supported else settings.LANGUAGE_CODE


class LocaleAndTimezoneMiddleware:
    """Goes after AuthenticationMiddleware (it reads the user)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        language = chosen_language(request)
        translation.activate(language)
        request.LANGUAGE_CODE = translation.get_language()
        user = getattr(request, "user", None)
        center = getattr(user, "center", None) if user is not None and user.is_authenticated else None
        timezone.activate(center.zone if center else ZoneInfo(settings.TIME_ZONE))
        try:
            response = self.get_response(request)
        finally:
            timezone.deactivate()  # the thread serves other requests (and tasks) next
        patch_vary_headers(response, ("Cookie",))
        response.headers.setdefault("Content-Language", language)
        return response
