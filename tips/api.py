"""089 tip follow-up over REST: receive, list, read, classify, route, change status, call-back look-up.
Only the 089 role and supervisors (accounts.permissions.IsTipsUser); every access is audited.

Input is strict: any key outside the documented ones is refused (400) without echoing its value, so a
caller identifier can never be accepted, stored or reflected back in an error."""

import re

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import IsSupervisor, IsTipsUser
from cad.api import FloatField, errors
from cad.errors import NotFound
from incidents.api import IncidentTypeCodeField
from tips import selectors, services
from tips.models import TipStatus

TIP_FOLIO_RE = re.compile(r"^089-\d{5}-\d{5}$")
_SAFE_KEY = re.compile(r"^[a-z_]{1,40}$")
FOLIO_PARAM = OpenApiParameter("folio", OpenApiTypes.STR, OpenApiParameter.PATH, pattern=TIP_FOLIO_RE.pattern)


def tip_folio(raw: str) -> str:
    if not TIP_FOLIO_RE.fullmatch(raw):
        raise NotFound(_("No existe la denuncia."))
    return raw


class StrictInput(serializers.Serializer):
    """Refuses keys it does not declare, naming them only when the name is a plain identifier."""

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise ValidationError({"non_field_errors": [_("Se espera un objeto JSON.")]})
        unknown = [key for key in data if key not in self.fields]
        if unknown:
            message = _("Campo no permitido: las denuncias 089 son anónimas y no aceptan otros datos.")
            raise ValidationError(
                {
                    (key if isinstance(key, str) and _SAFE_KEY.fullmatch(key) else "non_field_errors"): [
                        message
                    ]
                    for key in unknown
                }
            )
        return super().to_internal_value(data)


class AuthorityOutput(serializers.Serializer):
    id = serializers.IntegerField()
    code = serializers.CharField()
    name = serializers.CharField()
    contact = serializers.CharField()
    due_days = serializers.IntegerField()


class TipUpdateOutput(serializers.Serializer):
    at = serializers.DateTimeField()
    by = serializers.CharField(source="by.username")
    status = serializers.CharField()
    text = serializers.CharField()


class TipListOutput(serializers.Serializer):
    folio = serializers.CharField()
    status = serializers.CharField()
    status_label = serializers.CharField(source="get_status_display")
    type_code = serializers.CharField(source="incident_type.code", allow_null=True, default=None)
    type_name = serializers.CharField(source="incident_type.name", allow_null=True, default=None)
    authority = AuthorityOutput(allow_null=True)
    routed_at = serializers.DateTimeField(allow_null=True)
    due_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class TipDetailOutput(TipListOutput):
    narrative = serializers.CharField()
    address = serializers.CharField()
    lat = FloatField(allow_null=True)
    lon = FloatField(allow_null=True)
    updates = TipUpdateOutput(many=True)


class TipCreatedOutput(TipDetailOutput):
    code = serializers.CharField(
        help_text=gettext_lazy("Código corto para leer a quien denuncia; se muestra una sola vez.")
    )


class TipCreateApi(APIView):
    permission_classes = [IsTipsUser]

    class TipCreateInput(StrictInput):
        narrative = serializers.CharField(max_length=10_000)
        incident_type_code = IncidentTypeCodeField(required=False, allow_null=True)
        address = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")
        lat = FloatField(min_value=-90, max_value=90, required=False, allow_null=True)
        lon = FloatField(min_value=-180, max_value=180, required=False, allow_null=True)

        def validate(self, attrs):
            if (attrs.get("lat") is None) != (attrs.get("lon") is None):
                raise ValidationError({"lat": [_("Capture latitud y longitud juntas.")]})
            return attrs

    @extend_schema(
        operation_id="tips_create",
        request=TipCreateInput,
        responses={201: TipCreatedOutput, **errors(400)},
        summary=gettext_lazy("Registrar una denuncia 089 (devuelve folio y código de seguimiento)"),
    )
    def post(self, request):
        data = self.TipCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        tip, code = services.receive_tip(
            center=request.user.center,
            by=request.user,
            incident_type=values.pop("incident_type_code", None),
            **values,
        )
        tip.code = code  # shown once, never stored in clear
        return Response(TipCreatedOutput(tip).data, status=201)


class TipListApi(APIView):
    permission_classes = [IsTipsUser]

    class TipListQuery(serializers.Serializer):
        status = serializers.ChoiceField(choices=TipStatus.choices, required=False)
        authority = serializers.CharField(max_length=16, required=False)
        overdue = serializers.BooleanField(required=False, default=False)

    @extend_schema(
        operation_id="tips_list",
        parameters=[TipListQuery],
        responses={200: TipListOutput(many=True), **errors(400)},
        summary=gettext_lazy("Denuncias 089 en seguimiento (por fecha compromiso)"),
    )
    def get(self, request):
        query = self.TipListQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        tips = selectors.tip_list(user=request.user, **query.validated_data)[:500]
        return Response(TipListOutput(tips, many=True).data)


class TipDetailApi(APIView):
    permission_classes = [IsTipsUser]

    @extend_schema(
        operation_id="tips_read",
        parameters=[FOLIO_PARAM],
        responses={200: TipDetailOutput, **errors(404)},
        summary=gettext_lazy("Contenido y seguimiento de una denuncia 089 (queda auditado)"),
    )
    def get(self, request, folio):
        return Response(TipDetailOutput(selectors.tip_get(folio=tip_folio(folio), user=request.user)).data)


class TipClassifyApi(APIView):
    permission_classes = [IsTipsUser]

    class TipClassifyInput(StrictInput):
        incident_type_code = IncidentTypeCodeField()
        note = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")

    @extend_schema(
        operation_id="tips_classify",
        parameters=[FOLIO_PARAM],
        request=TipClassifyInput,
        responses={200: TipListOutput, **errors(400, 404)},
        summary=gettext_lazy("Clasificar una denuncia 089 (CNIE)"),
    )
    def post(self, request, folio):
        data = self.TipClassifyInput(data=request.data)
        data.is_valid(raise_exception=True)
        tip = services.classify_tip(
            folio=tip_folio(folio),
            center_id=request.user.center_id,
            by=request.user,
            incident_type=data.validated_data["incident_type_code"],
            note=data.validated_data["note"],
        )
        return Response(TipListOutput(tip).data)


class TipRouteApi(APIView):
    permission_classes = [IsTipsUser]

    class TipRouteInput(StrictInput):
        authority = serializers.IntegerField(min_value=1)
        due_at = serializers.DateTimeField(required=False, allow_null=True)
        note = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")

    @extend_schema(
        operation_id="tips_route",
        parameters=[FOLIO_PARAM],
        request=TipRouteInput,
        responses={200: TipListOutput, **errors(400, 404, 409)},
        summary=gettext_lazy("Canalizar una denuncia 089 a la autoridad competente"),
    )
    def post(self, request, folio):
        data = self.TipRouteInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        tip = services.route_tip(
            folio=tip_folio(folio),
            center_id=request.user.center_id,
            by=request.user,
            authority_id=values["authority"],
            due_at=values.get("due_at"),
            note=values["note"],
        )
        return Response(TipListOutput(tip).data)


class TipStatusApi(APIView):
    permission_classes = [IsTipsUser]

    class TipStatusInput(StrictInput):
        status = serializers.ChoiceField(choices=TipStatus.choices)
        note = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")

    @extend_schema(
        operation_id="tips_status",
        parameters=[FOLIO_PARAM],
        request=TipStatusInput,
        responses={200: TipListOutput, **errors(400, 404, 409)},
        summary=gettext_lazy("Cambiar el estado de seguimiento de una denuncia 089"),
    )
    def post(self, request, folio):
        data = self.TipStatusInput(data=request.data)
        data.is_valid(raise_exception=True)
        tip = services.set_tip_status(
            folio=tip_folio(folio), center_id=request.user.center_id, by=request.user, **data.validated_data
        )
        return Response(TipListOutput(tip).data)


class TipCallbackApi(APIView):
    """The tipster calls back and reads folio and code; the 089 operator hears the status to read back."""

    permission_classes = [IsTipsUser]

    class TipCallbackInput(StrictInput):
        folio = serializers.CharField(max_length=20)
        code = serializers.RegexField(r"^\d{6}$")

    class TipCallbackOutput(serializers.Serializer):
        folio = serializers.CharField()
        status = serializers.CharField()
        status_label = serializers.CharField(source="get_status_display")
        authority = serializers.CharField(source="authority.name", allow_null=True, default=None)
        due_at = serializers.DateTimeField(allow_null=True)
        updated_at = serializers.DateTimeField()

    @extend_schema(
        operation_id="tips_callback_status",
        request=TipCallbackInput,
        responses={200: TipCallbackOutput, **errors(400, 404, 429)},
        summary=gettext_lazy("Estado de una denuncia 089 por folio y código (llamada de seguimiento)"),
    )
    def post(self, request):
        data = self.TipCallbackInput(data=request.data)
        data.is_valid(raise_exception=True)
        tip = services.tip_status_for_callback(
            center_id=request.user.center_id, by=request.user, **data.validated_data
        )
        return Response(self.TipCallbackOutput(tip).data)


class AuthorityListApi(APIView):
    permission_classes = [IsTipsUser]

    @extend_schema(
        operation_id="tips_authorities",
        responses={200: AuthorityOutput(many=True)},
        summary=gettext_lazy("Autoridades competentes para canalizar denuncias 089"),
    )
    def get(self, request):
        return Response(
            AuthorityOutput(selectors.authority_list(center_id=request.user.center_id), many=True).data
        )


class TipAccessLogApi(APIView):
    permission_classes = [IsSupervisor]

    class TipAccessOutput(serializers.Serializer):
        at = serializers.DateTimeField()
        user = serializers.CharField(source="user.username")
        action = serializers.CharField()
        folio = serializers.CharField()
        detail = serializers.CharField()

    @extend_schema(
        operation_id="tips_audit",
        parameters=[OpenApiParameter("folio", OpenApiTypes.STR, OpenApiParameter.QUERY, required=False)],
        responses={200: TipAccessOutput(many=True)},
        summary=gettext_lazy("Bitácora de accesos a denuncias 089 (supervisión)"),
    )
    def get(self, request):
        folio = request.query_params.get("folio") or None
        log = selectors.tip_access_log(center_id=request.user.center_id, folio=folio)[:1000]
        return Response(self.TipAccessOutput(log, many=True).data)
