"""`Authorization: Token <token>` for the API (devices, peer states, scripts), on django-rest-knox.

Knox's checks (digest compared in constant time, expiry), with three changes:
- one query: the token row with its user and the user's centre;
- Spanish messages (gettext) in the API's error shape (cad.errors), and a malformed header is a 401, not a 500;
- the user's centre's time zone is activated, as cad.middleware does for session users: DRF authenticates
  in the view, after the middleware has run with an anonymous user, so without this a device of a centre in
  another zone would get settings.TIME_ZONE (local times in notes, exports, day ranges).
"""

import binascii
from hmac import compare_digest

from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from knox.auth import TokenAuthentication
from knox.crypto import hash_token
from knox.models import get_token_model
from knox.settings import CONSTANTS
from rest_framework import exceptions
from rest_framework.authentication import get_authorization_header

INVALID = _(
    "Token inválido, vencido o revocado. Pida un token nuevo al administrador (manage.py service_token)."
)


class ServiceTokenAuthentication(TokenAuthentication):
    def authenticate(self, request):
        auth = get_authorization_header(request).split()
        if not auth or auth[0].lower() != self.authenticate_header(request).encode().lower():
            return None  # no token: another authentication class may apply
        if len(auth) != 2:
            raise exceptions.AuthenticationFailed(
                _("Encabezado Authorization inválido; use «Authorization: Token <token>».")
            )
        try:
            token = auth[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed(INVALID) from None
        user, auth_token = self.authenticate_credentials(token)
        if user.center_id is not None:
            timezone.activate(user.center.zone)  # cad.middleware deactivates it when the response is done
        return user, auth_token

    def authenticate_credentials(self, token: str):
        try:
            digest = hash_token(token)
        except (TypeError, ValueError, binascii.Error):
            raise exceptions.AuthenticationFailed(INVALID) from None
        now = timezone.now()
        candidates = (
            get_token_model()
            .objects.select_related("user__center")
            .filter(token_key=token[: CONSTANTS.TOKEN_KEY_LENGTH])
        )
        for auth_token in candidates:
            if compare_digest(digest, auth_token.digest):
                if auth_token.expiry is not None and auth_token.expiry <= now:
                    break  # expired (kept until revoked or rotated away: `service_token list` shows it)
                return self.validate_user(auth_token)
        raise exceptions.AuthenticationFailed(INVALID)

    def validate_user(self, auth_token):
        if not auth_token.user.is_active:
            raise exceptions.AuthenticationFailed(_("La cuenta de este token está desactivada."))
        return auth_token.user, auth_token


class ServiceTokenScheme(OpenApiAuthenticationExtension):
    """The OpenAPI security scheme: the same `tokenAuth` DRF's TokenAuthentication had."""

    target_class = "accounts.auth.ServiceTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": str(_('Token con el prefijo "Token", p. ej. "Token 3f9a…"')),
        }
