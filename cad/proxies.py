"""Client address and scheme behind a reverse proxy, trusted only from the proxies you configure.

Daphne's `--proxy-headers` believes `X-Forwarded-For` from anyone, so any client could choose the address
that login throttling and the logs see. This ASGI middleware takes the client address from
`X-Forwarded-For` and the scheme from `X-Forwarded-Proto` only when the connection comes from an address in
CAD_TRUSTED_PROXIES (IPs or networks, e.g. `127.0.0.1,10.0.0.0/8`); the client is then the right-most
address of the chain that is not itself a trusted proxy. From anyone else both headers are removed, so
Django's SECURE_PROXY_SSL_HEADER cannot be fooled either.
"""

from ipaddress import ip_address, ip_network

from django.conf import settings

FORWARDED = (b"x-forwarded-for", b"x-forwarded-proto")


def _networks():
    return [
        ip_network(entry.strip(), strict=False) for entry in settings.CAD_TRUSTED_PROXIES if entry.strip()
    ]


def _trusted(address: str, networks) -> bool:
    try:
        ip = ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_scope(scope: dict, networks) -> dict:
    """The scope with `client` and `scheme` as the trusted proxy chain says, and no forwarded headers."""
    headers = [(name, value) for name, value in scope.get("headers", ()) if name not in FORWARDED]
    forwarded = {name: value for name, value in scope.get("headers", ()) if name in FORWARDED}
    peer = (scope.get("client") or ("", 0))[0]
    scope = {**scope, "headers": headers}
    if not _trusted(peer, networks):
        return scope
    chain = [part.strip() for part in forwarded.get(b"x-forwarded-for", b"").decode("latin-1").split(",")]
    for address in reversed([part for part in chain if part]):
        if not _trusted(address, networks):
            scope["client"] = (address, 0)
            break
    proto = forwarded.get(b"x-forwarded-proto", b"").decode("latin-1").strip().lower()
    if proto in ("http", "https"):
        secure = proto == "https"
        scope["scheme"] = ("wss" if secure else "ws") if scope["type"] == "websocket" else proto
        if secure:  # what Django's SECURE_PROXY_SSL_HEADER reads
            headers.append((b"x-forwarded-proto", b"https"))
    return scope


class TrustedProxyMiddleware:
    def __init__(self, application):
        self.application = application
        self.networks = _networks()

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            scope = client_scope(scope, self.networks)
        return await self.application(scope, receive, send)
