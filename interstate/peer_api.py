"""The peer-facing endpoints (another centre's CAD calls these; docs/interstate.md sections 2–5).

Every request is authenticated by an HMAC signature (PeerSignatureAuthentication) and audited in
PeerRequestLog by `PeerApiView.finalize_response` — accepted and refused alike, whatever refused it.
"""

import time
from contextlib import nullcontext

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import exceptions, serializers
from rest_framework.authentication import BaseAuthentication
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import User
from accounts.permissions import IsPeer
from cad.api import ErrorOutput
from cad.db import RowShape
from cad.models import Center
from geo.models import Jurisdiction
from interstate import eido, services, signing
from interstate.models import Escalation, Peer, PeerRequestLog
from interstate.selectors import escalation_shared_with
from interstate.validation import SchemaErrors, null_character_paths, validate_message

PROTOCOL = "c4cad-interstate/1"


class Replayed(exceptions.APIException):
    status_code = 409
    default_detail = gettext_lazy("Mensaje repetido: esa combinación de clave y nonce ya se recibió.")
    default_code = "replayed"


class TooLarge(exceptions.APIException):
    """A body over DATA_UPLOAD_MAX_MEMORY_SIZE: refused here, inside the view, so that it is audited and answered
    like every other refusal (Django would answer it before any view, unaudited, and log it at ERROR)."""

    status_code = 413
    default_code = "request_too_large"

    def __init__(self):
        super().__init__(
            _("Mensaje demasiado grande: el máximo es %(limit)s bytes.")
            % {"limit": settings.DATA_UPLOAD_MAX_MEMORY_SIZE}
        )


class PeerSignatureAuthentication(BaseAuthentication):
    """Key id → peer; enabled; timestamp within the skew; HMAC over method, path, timestamp, nonce and body;
    (key id, nonce) unseen within the window. Authenticates as the peer's service user; `request.auth` is the
    Peer."""

    def authenticate(self, request):
        headers = request.headers
        key_id, timestamp, nonce, presented = (
            headers.get(name, "")
            for name in (signing.KEY_ID, signing.TIMESTAMP, signing.NONCE, signing.SIGNATURE)
        )
        request._request.interstate_key_id = key_id[:64]
        well_formed = bool(signing.KEY_ID_RE.match(key_id))
        peer = None
        if well_formed:
            peer = _peer_by_key(key_id)
            request._request.interstate_peer = peer  # the audit names the peer even when refused below
        if not (well_formed and timestamp.isdigit() and signing.NONCE_RE.match(nonce) and presented):
            raise exceptions.AuthenticationFailed(
                _("Petición sin firma o con encabezados X-CAD-* inválidos."), code="not_signed"
            )
        if peer is None:
            raise exceptions.AuthenticationFailed(_("Clave desconocida."), code="unknown_key")
        if not peer.enabled:
            # Read at the sender's end ("HTTP 403: …" on its console): say who disabled whom.
            raise exceptions.PermissionDenied(
                _("Este centro deshabilitó el enlace con el suyo: por ahora no acepta sus mensajes."),
                code="peer_disabled",
            )
        skew = settings.CAD_INTERSTATE_CLOCK_SKEW_S
        if abs(time.time() - int(timestamp)) > skew:
            raise exceptions.AuthenticationFailed(
                _("Marca de tiempo fuera de la ventana de ±%(s)s s.") % {"s": skew}, code="stale_timestamp"
            )
        try:
            body = request._request.body
        except RequestDataTooBig:
            raise TooLarge() from None
        message = signing.canonical(
            method=request.method,
            path=request._request.get_full_path(),
            timestamp=timestamp,
            nonce=nonce,
            body=body,
        )
        if not signing.matches(peer.inbound_secret, message, presented):
            raise exceptions.AuthenticationFailed(_("Firma inválida."), code="bad_signature")
        if not _first_use(key_id, nonce):
            raise Replayed()
        return peer.service_user, peer

    def authenticate_header(self, request) -> str:
        return 'CAD-HMAC realm="interstate"'


_PEER = RowShape((Peer, ("service_area",)), (User, ()), (Center, ()))
_PEER_SQL = (
    f"SELECT {_PEER.columns('p', 0)}, {_PEER.columns('u', 1)}, {_PEER.columns('c', 2)}"  # noqa: S608 - model columns
    " FROM interstate_peer p JOIN accounts_user u ON u.id = p.service_user_id"
    " LEFT JOIN cad_center c ON c.id = u.center_id WHERE p.inbound_key_id = %s"
)


def _peer_by_key(key_id: str) -> Peer | None:
    """The peer that signs with `key_id`, with its service user and the user's centre (not its service area),
    in one hand-written statement: every peer request starts here (cad.db.RowShape)."""
    found = _PEER.one(_PEER_SQL, [key_id])
    if found is None:
        return None
    peer, user, center = found
    user.center = center
    peer.service_user = user
    return peer


def _first_use(key_id: str, nonce: str) -> bool:
    """Record (key id, nonce) in the table every web process shares; False if it was already there (a replay
    within the window: nonces are kept twice the clock skew, interstate.services.prune_audit_and_nonces).

    One statement, its own transaction (outside one: the request's is not open yet). PostgreSQL commits it
    without waiting for its WAL flush (synchronous_commit off for this transaction only, set by the statement
    itself): a crash of the database server could forget the last fraction of a second of nonces, never admit
    a duplicate while it runs; it saves the request a disk flush (measured in docs/interstate.md §2) and the
    three round trips of an explicit transaction."""
    seen_at = connection.ops.adapt_datetimefield_value(timezone.now())
    if connection.vendor == "postgresql":
        sql = (
            "INSERT INTO interstate_peernonce (key_id, nonce, seen_at) SELECT %s, %s, %s"
            " FROM (SELECT set_config('synchronous_commit', 'off', true)) AS unflushed"
        )
    else:
        sql = "INSERT INTO interstate_peernonce (key_id, nonce, seen_at) VALUES (%s, %s, %s)"
    try:
        savepoint = transaction.atomic() if connection.in_atomic_block else nullcontext()
        with savepoint, connection.cursor() as cursor:
            cursor.execute(sql, [key_id, nonce, seen_at])
    except IntegrityError:
        return False
    return True


class PeerSignatureScheme(OpenApiAuthenticationExtension):
    target_class = PeerSignatureAuthentication
    name = "peerSignature"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": signing.SIGNATURE,
            "description": (
                "HMAC-SHA256 (hex) with the secret the receiver issued, over "
                "METHOD\\nPATH\\nTIMESTAMP\\nNONCE\\nhex(sha256(BODY)); also send X-CAD-Key-Id, X-CAD-Timestamp "
                "(Unix seconds, ±300 s) and X-CAD-Nonce (16–64 of [A-Za-z0-9_-], never reused). See docs/interstate.md."
            ),
        }


SIGNATURE_HEADERS = [
    OpenApiParameter(signing.KEY_ID, OpenApiTypes.STR, OpenApiParameter.HEADER, required=True),
    OpenApiParameter(signing.TIMESTAMP, OpenApiTypes.INT, OpenApiParameter.HEADER, required=True),
    OpenApiParameter(signing.NONCE, OpenApiTypes.STR, OpenApiParameter.HEADER, required=True),
    OpenApiParameter(signing.SIGNATURE, OpenApiTypes.STR, OpenApiParameter.HEADER, required=True),
]
REFUSALS = {
    401: OpenApiResponse(ErrorOutput, description="not_signed, unknown_key, stale_timestamp, bad_signature"),
    403: OpenApiResponse(ErrorOutput, description="peer_disabled"),
    409: OpenApiResponse(ErrorOutput, description="replayed (or duplicate_request)"),
}


class PeerApiView(APIView):
    """Signed peer requests only; every answer is written to the audit."""

    authentication_classes = [PeerSignatureAuthentication]
    permission_classes = [IsPeer]
    audit_action = ""

    def initial(self, request, *args, **kwargs):
        self.audit = {"action": self.audit_action, "request_id": "", "incident_folio": ""}
        super().initial(request, *args, **kwargs)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        audit = getattr(self, "audit", {"action": self.audit_action})
        peer = getattr(request._request, "interstate_peer", None)
        data = response.data if isinstance(response.data, dict) else {}

        def text(value, limit: int) -> str:  # what a peer sent may hold U+0000, which PostgreSQL cannot store
            return str(value or "").replace("\x00", "\ufffd")[:limit]

        PeerRequestLog.objects.create(
            peer=peer,
            peer_code=text(peer.code if peer else getattr(request._request, "interstate_key_id", ""), 64),
            direction=PeerRequestLog.Direction.INBOUND,
            method=request.method,
            path=text(request._request.path, 300),
            action=(audit.get("action") or self.audit_action)[:32],
            request_id=text(audit.get("request_id"), 100),
            incident_folio=text(audit.get("incident_folio") or data.get("incident"), 32),
            status_code=response.status_code,
            result=("ok" if response.status_code < 400 else str(data.get("code") or "error"))[:64],
            remote_addr=text(request.META.get("REMOTE_ADDR"), 64),
            detail=text(data.get("message") or data.get("responseText"), 500),
        )
        return response


ANSWER = inline_serializer(
    "PeerMessageAnswer",
    {
        "requestId": serializers.CharField(),
        "responseCode": serializers.IntegerField(help_text="182 queued, 200 done"),
        "responseText": serializers.CharField(),
        "incident": serializers.CharField(
            help_text="The receiver's folio of the shared incident (empty for vehicle messages)."
        ),
    },
)
ENVELOPE = inline_serializer(
    "PeerMessage",
    {
        "requestForService": serializers.JSONField(required=False, help_text="{requestId}"),
        "requestAwarenes": serializers.JSONField(
            required=False,
            help_text="{requestId, subscriptionId, statusCode, statusText} (published spelling)",
        ),
        "event": serializers.JSONField(required=False, help_text="update: {subscriptionId, transactionId}"),
        "cancelREequest": serializers.JSONField(required=False, help_text="{requestId} (published spelling)"),
        "response": serializers.JSONField(
            required=False, help_text="{requestId, responseCode, responseText}"
        ),
        "vehicleAlert": serializers.JSONField(
            required=False,
            help_text="{action: publish|withdraw|expire, alerts: [{alertId, vehicle, plate, listKind, reason, "
            "validUntil}]} (this protocol's own kind; docs/interstate.md §3.1)",
        ),
        "vehicleSighting": serializers.JSONField(
            required=False,
            help_text="{alertId, readPlate, readAt, reader: {code, name, direction}} (this protocol's own kind)",
        ),
        "requestId": serializers.CharField(max_length=100),
        "eido": serializers.JSONField(required=False, help_text="NENA EIDO (STA-021) document"),
        "sequence": serializers.IntegerField(
            required=False, min_value=1, help_text="update and vehicleAlert only"
        ),
        "reason": serializers.CharField(required=False, help_text="cancel only"),
        "incident": serializers.CharField(required=False, help_text="response only: the responder's folio"),
    },
)


class PeerMessageApi(PeerApiView):
    audit_action = "message"

    @extend_schema(
        operation_id="interstate_messages_create",
        tags=["interstate-peer"],
        parameters=[
            *SIGNATURE_HEADERS,
            OpenApiParameter(
                signing.IDEMPOTENCY_KEY, OpenApiTypes.STR, OpenApiParameter.HEADER, required=True
            ),
        ],
        request=ENVELOPE,
        responses={
            200: ANSWER,
            202: ANSWER,
            400: OpenApiResponse(
                ErrorOutput, description="invalid_message (fields.schema lists the reasons)"
            ),
            404: OpenApiResponse(ErrorOutput, description="not_shared"),
            422: OpenApiResponse(
                ErrorOutput, description="unsupported_kind (the receiver takes no vehicle alerts)"
            ),
            **REFUSALS,
        },
        summary=gettext_lazy(
            "Mensaje de un centro par: STA-024 (solicitud, aviso, actualización, cancelación, respuesta) o "
            "alerta / avistamiento de vehículo"
        ),
    )
    def post(self, request):
        message = request.data
        if nulls := null_character_paths(message):  # before anything of it is stored, the audit included
            raise services.MessageRefused(
                _("El mensaje contiene caracteres nulos (U+0000): no se pueden guardar."),
                code="invalid_message",
                fields={path: [_("Caracteres nulos no están permitidos.")] for path in nulls},
            )
        wire_key = services.message_kind(message)
        self.audit.update(
            action=services.KIND_OF_WIRE_KEY[wire_key],
            request_id=message.get("requestId") if isinstance(message.get("requestId"), str) else "",
        )
        key = request.headers.get(signing.IDEMPOTENCY_KEY, "")
        if not key or len(key) > 80:
            raise services.MessageRefused(
                _("Falta el encabezado Idempotency-Key (máximo 80 caracteres).")
                if not key
                else _("El encabezado Idempotency-Key pasa de 80 caracteres (%(n)s).") % {"n": len(key)},
                code="idempotency_key_required",
                fields={"Idempotency-Key": [_("Requerido, de 1 a 80 caracteres.")]},
            )
        try:
            validate_message(wire_key, message)
        except SchemaErrors as errors:
            raise schema_refusal(errors) from None
        services.check_envelope(wire_key, message)
        status, answer = services.receive_message(
            peer=request.auth, idempotency_key=key, wire_key=wire_key, message=message
        )
        return Response(answer, status=status)


def schema_refusal(errors: SchemaErrors) -> services.MessageRefused:
    """A message failing NENA's schema: its reasons (jsonschema's own words) in `fields.schema`."""
    count = len(errors.errors)
    return services.MessageRefused(
        ngettext(
            "El mensaje no cumple el esquema NENA (%(n)s error).",
            "El mensaje no cumple el esquema NENA (%(n)s errores).",
            count,
        )
        % {"n": count},
        code="invalid_message",
        fields={"schema": errors.errors},
    )


class PeerIncidentApi(PeerApiView):
    audit_action = "read"

    @extend_schema(
        operation_id="interstate_incident_retrieve",
        tags=["interstate-peer"],
        parameters=[
            *SIGNATURE_HEADERS,
            OpenApiParameter("request_id", OpenApiTypes.STR, OpenApiParameter.PATH),
        ],
        responses={
            200: OpenApiResponse(OpenApiTypes.OBJECT, description="NENA EIDO"),
            404: ErrorOutput,
            **REFUSALS,
        },
        summary=gettext_lazy("EIDO actual de un incidente compartido con el centro par"),
    )
    def get(self, request, request_id):
        self.audit["request_id"] = request_id
        escalation = escalation_shared_with(peer=request.auth, request_id=request_id)
        self.audit["incident_folio"] = escalation.incident.folio
        direction = "inbound" if escalation.direction == Escalation.Direction.INBOUND else escalation.kind
        return Response(
            eido.build_eido(
                escalation.incident, peer_code=request.auth.code, peer_role=eido.PEER_ROLE[direction]
            )
        )


class WellKnownApi(PeerApiView):
    audit_action = "well-known"

    @extend_schema(
        operation_id="interstate_well_known",
        tags=["interstate-peer"],
        parameters=SIGNATURE_HEADERS,
        responses={
            200: inline_serializer(
                "CadPeerDocument",
                {
                    "center": serializers.CharField(),
                    "name": serializers.CharField(),
                    "kind": serializers.ChoiceField(choices=Peer.Kind.choices),
                    "agency_id": serializers.CharField(),
                    "base_url": serializers.URLField(),
                    "contact_desk": serializers.CharField(),
                    "service_area": serializers.JSONField(allow_null=True, help_text="GeoJSON geometry"),
                    "protocol": serializers.CharField(),
                    "eido_version": serializers.CharField(),
                },
            ),
            **REFUSALS,
        },
        summary=gettext_lazy("Identidad y área de servicio de este centro"),
    )
    def get(self, request):
        center = services.home_center()
        area = (
            Jurisdiction.objects.filter(kind=Jurisdiction.Kind.STATE, cve_ent=center.cve_ent)
            .values_list("geometry", flat=True)
            .first()
            if center.cve_ent
            else None
        )
        return Response(
            {
                "center": center.code,
                "name": center.name,
                "kind": settings.CAD_CENTER_KIND,
                "agency_id": eido.agency_id(center.code),
                "base_url": settings.CAD_PUBLIC_URL,
                "contact_desk": settings.CAD_CONTACT_DESK,
                "service_area": area,
                "protocol": PROTOCOL,
                "eido_version": eido.EIDO_VERSION,
            }
        )
