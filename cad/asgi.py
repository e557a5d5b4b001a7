import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cad.settings")

from cad.handlers import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

from cad.checks import require_secret_key  # noqa: E402

require_secret_key()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from cad.proxies import TrustedProxyMiddleware  # noqa: E402
from cad.websocket import SameOriginValidator, websocket_auth  # noqa: E402
from console.routing import websocket_urlpatterns  # noqa: E402

application = TrustedProxyMiddleware(
    ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            "websocket": AllowedHostsOriginValidator(
                SameOriginValidator(websocket_auth(URLRouter(websocket_urlpatterns)))
            ),
        }
    )
)
