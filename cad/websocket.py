"""Websocket handshake guard: only this site's own pages may open a socket with the user's cookie; and the
session and user of a websocket (`websocket_auth`).

Channels' AllowedHostsOriginValidator compares the Origin's host with ALLOWED_HOSTS only, so any page
served from an allowed host on ANY scheme or port (another service on the same machine) could open a
console socket with the user's session. Here the Origin's scheme, host and port must equal the request's
own (the Host header; wss or a proxy's `X-Forwarded-Proto: https` means https), or be listed in
DJANGO_CSRF_TRUSTED_ORIGINS, as Django's CSRF origin check does for forms.
"""

from importlib import import_module
from urllib.parse import urlsplit

from channels.auth import AuthMiddleware
from channels.security.websocket import WebsocketDenier
from channels.sessions import CookieMiddleware
from django.conf import settings

DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin_key(url: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(url)
        port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return parts.scheme, parts.hostname.lower(), port


class SameOriginValidator:
    def __init__(self, application):
        self.application = application

    def allowed(self, scope) -> bool:
        headers = dict(scope.get("headers", ()))
        origin = _origin_key(headers.get(b"origin", b"").decode("latin-1"))
        host = headers.get(b"host", b"").decode("latin-1")
        if origin is None or not host:
            return False
        secure = scope.get("scheme") == "wss" or headers.get(b"x-forwarded-proto") == b"https"
        own = _origin_key(f"{'https' if secure else 'http'}://{host}")
        trusted = {_origin_key(url) for url in settings.CSRF_TRUSTED_ORIGINS}
        return origin == own or origin in trusted

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not self.allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)


class WebsocketSessionMiddleware:
    """scope["session"] from the session cookie, for websockets. Channels' SessionMiddleware also wraps every
    message the application sends, to save a modified session into an HTTP response; a websocket never saves
    one, and that wrapper inspected the session on each frame (some 6% of a server's event loop fanning
    events out to hundreds of consoles)."""

    def __init__(self, inner):
        self.inner = inner
        self.session_store = import_module(settings.SESSION_ENGINE).SessionStore

    async def __call__(self, scope, receive, send):
        # Loaded on first use (channels' get_user, off the event loop).
        session = self.session_store(scope["cookies"].get(settings.SESSION_COOKIE_NAME))
        return await self.inner({**scope, "session": session}, receive, send)


def websocket_auth(inner):
    """Channels' AuthMiddlewareStack for websockets: scope["cookies"], scope["session"], scope["user"]."""
    return CookieMiddleware(WebsocketSessionMiddleware(AuthMiddleware(inner)))
