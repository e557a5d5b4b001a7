"""Websocket handshake guard: only this site's own pages may open a socket with the user's cookie.

Channels' AllowedHostsOriginValidator compares the Origin's host with ALLOWED_HOSTS only, so any page
served from an allowed host on ANY scheme or port (another service on the same machine) could open a
console socket with the user's session. Here the Origin's scheme, host and port must equal the request's
own (the Host header; wss or a proxy's `X-Forwarded-Proto: https` means https), or be listed in
DJANGO_CSRF_TRUSTED_ORIGINS, as Django's CSRF origin check does for forms.
"""

from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
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
