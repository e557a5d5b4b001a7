"""Calls, incidents, assignments and the CNIE catalogue over REST. Thin: parse, call a service or a
selector, serialize. Every incident read and write is scoped to the user's centre."""

import re
import uuid
from datetime import timedelta

from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    PolymorphicProxySerializer,
    extend_schema,
)
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import IsConsoleUser, IsDispatcher
from cad.api import IDEMPOTENCY_KEY, IF_MATCH, FloatField, LimitOffsetPagination, errors, expected_version
from cad.errors import NotFound
from cad.idempotency import idempotent
from incidents import services
from incidents.filters import IncidentFilter, incident_type_search, incidents_for_list
from incidents.models import (
    CALLER_DEVICE_SOURCES,
    CallDisposition,
    Channel,
    IncidentStatus,
    IncidentType,
    Line,
    LocationSource,
)
from incidents.selectors import duplicate_candidates, incident_get, incident_get_for_recommendation
from incidents.summary import IncidentSummaryOutput
from units.selectors import dispatch_options, recommend_units, unit_ids_for_callsigns


def not_future(value, *, slack_s: int = 300):
    if value > timezone.now() + timedelta(seconds=slack_s):
        raise ValidationError(_("La hora no puede estar en el futuro."))
    if value.year < 2000:
        raise ValidationError(_("Fecha fuera de rango."))
    return value


class IncidentTypeCodeField(serializers.RegexField):
    """A 5-digit CNIE code of an active catalogue entry; deserializes to the IncidentType."""

    def __init__(self, **kwargs):
        super().__init__(r"^\d{5}$", max_length=5, min_length=5, **kwargs)

    def run_validation(self, data=serializers.empty):
        code = super().run_validation(data)
        if code is None or code is serializers.empty:
            return code
        incident_type = IncidentType.objects.filter(code=code, active=True).first()
        if incident_type is None:
            raise ValidationError(_("Clave CNIE desconocida o no vigente: %(code)s.") % {"code": code})
        return incident_type


FOLIO_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def folio_of(raw: str) -> str:
    """The folio of the URL; anything that cannot be a folio (e.g. NUL bytes) is a 404 up front."""
    if not FOLIO_RE.fullmatch(raw):
        raise NotFound(_("No existe el incidente %(folio)s.") % {"folio": raw[:32].replace("\x00", "")})
    return raw


FOLIO_PARAM = OpenApiParameter(
    "folio", OpenApiTypes.STR, OpenApiParameter.PATH, pattern=r"^[A-Z]{2,8}-\d{4}-\d{6}$"
)


# --- Output serializers ---------------------------------------------------------------------


class IncidentCallOutput(serializers.Serializer):
    """A call as the incident detail lists it. For 089 the caller's identity is never part of any answer."""

    uid = serializers.UUIDField()
    line = serializers.CharField()
    channel = serializers.CharField()
    disposition = serializers.CharField()
    arrived_at = serializers.DateTimeField()
    answered_at = serializers.DateTimeField(allow_null=True)
    released_at = serializers.DateTimeField(allow_null=True)
    caller_name = serializers.CharField(allow_null=True, required=False, help_text=gettext_lazy("Solo 911."))
    callback_number = serializers.CharField(
        allow_null=True, required=False, help_text=gettext_lazy("Solo 911.")
    )
    narrative = serializers.CharField()

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if instance.line == Line.ANONYMOUS:
            data.pop("caller_name", None)
            data.pop("callback_number", None)
        return data


class CallOutput(IncidentCallOutput):
    lat = FloatField(allow_null=True)
    lon = FloatField(allow_null=True)
    address = serializers.CharField()
    location_source = serializers.CharField()
    location_accuracy_m = FloatField(allow_null=True)
    incident_type_code = serializers.CharField(source="incident_type.code", allow_null=True, default=None)
    incident = serializers.CharField(source="incident.folio", allow_null=True, default=None)


class DuplicateCandidateOutput(serializers.Serializer):
    folio = serializers.CharField()
    type_code = serializers.CharField()
    type_name = serializers.CharField()
    priority = serializers.CharField()
    status = serializers.CharField()
    address = serializers.CharField()
    opened_at = serializers.DateTimeField()
    distance_m = FloatField()


class LocationCheckOutput(serializers.Serializer):
    lat = FloatField()
    lon = FloatField()
    inside_service_area = serializers.BooleanField()
    state = serializers.CharField(allow_null=True)
    municipality = serializers.CharField(allow_null=True)


class CallCreateOutput(serializers.Serializer):
    call = CallOutput()
    location = LocationCheckOutput(
        allow_null=True, help_text=gettext_lazy("El punto revisado; null sin coordenadas.")
    )
    duplicate_candidates = DuplicateCandidateOutput(many=True)


class AssignmentOutput(serializers.Serializer):
    id = serializers.IntegerField()
    folio = serializers.CharField(source="incident.folio")
    unit_id = serializers.IntegerField()
    callsign = serializers.CharField(source="unit.callsign")
    unit_status = serializers.CharField(source="unit.status")
    status = serializers.CharField()
    active = serializers.BooleanField()
    dispatched_at = serializers.DateTimeField()
    en_route_at = serializers.DateTimeField(allow_null=True)
    on_scene_at = serializers.DateTimeField(allow_null=True)
    transporting_at = serializers.DateTimeField(allow_null=True)
    at_hospital_at = serializers.DateTimeField(allow_null=True)
    cleared_at = serializers.DateTimeField(allow_null=True)


class ActiveUnitOutput(serializers.Serializer):
    unit_id = serializers.IntegerField()
    callsign = serializers.CharField(source="unit.callsign")
    status = serializers.CharField()


class IncidentListOutput(IncidentSummaryOutput):
    units = ActiveUnitOutput(source="assignments", many=True, help_text=gettext_lazy("Asignaciones activas."))


class TimelineEntryOutput(serializers.Serializer):
    id = serializers.IntegerField()
    at = serializers.DateTimeField()
    by = serializers.CharField(source="by.signature", allow_null=True, default=None)
    kind = serializers.CharField()
    text = serializers.CharField()


class IncidentDetailOutput(IncidentListOutput):
    units = None  # the detail lists every assignment, active or not
    narrative = serializers.CharField()
    disposition = serializers.CharField()
    call_answered_at = serializers.DateTimeField(allow_null=True)
    created_by = serializers.CharField(source="created_by.username")
    updated_at = serializers.DateTimeField()
    timeline = TimelineEntryOutput(many=True)
    calls = IncidentCallOutput(many=True)
    assignments = AssignmentOutput(many=True)


class IncidentListPage(serializers.Serializer):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = IncidentListOutput(many=True)


def _incident_response(folio: str, center_id: int, status: int = 200) -> Response:
    incident = incident_get(folio=folio, center_id=center_id)
    response = Response(IncidentDetailOutput(incident).data, status=status)
    response["ETag"] = f'"{incident.version}"'
    return response


# --- Calls ----------------------------------------------------------------------------------


class _CallInputBase(serializers.Serializer):
    channel = serializers.ChoiceField(choices=Channel.choices, default=Channel.VOICE)
    arrived_at = serializers.DateTimeField(required=False, validators=[not_future])
    answered_at = serializers.DateTimeField(required=False, validators=[not_future])
    # Ranges, 0,0, swaps and the service area are checked by the service (geo.validation.check_point).
    lat = FloatField(required=False, allow_null=True)
    lon = FloatField(required=False, allow_null=True)
    confirm_outside_area = serializers.BooleanField(
        required=False,
        default=False,
        help_text=gettext_lazy("Confirma un punto fuera del área de servicio del centro."),
    )
    address = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")
    location_source = serializers.ChoiceField(
        choices=LocationSource.choices, required=False, allow_blank=True, default=""
    )
    location_accuracy_m = FloatField(min_value=0, max_value=1_000_000, required=False, allow_null=True)
    narrative = serializers.CharField(max_length=10_000, required=False, allow_blank=True, default="")
    incident_type_code = IncidentTypeCodeField(required=False, allow_null=True)
    disposition = serializers.ChoiceField(choices=CallDisposition.choices)
    incident = serializers.CharField(
        max_length=32,
        required=False,
        allow_blank=True,
        help_text=gettext_lazy("Folio, para resolución «linked»."),
    )


class Call911Input(_CallInputBase):
    line = serializers.ChoiceField(choices=[(Line.EMERGENCY.value, Line.EMERGENCY.label)])
    caller_name = serializers.CharField(max_length=160, required=False, allow_blank=True, allow_null=True)
    callback_number = serializers.RegexField(
        r"^\+?[0-9 ()-]{3,20}$",
        max_length=20,
        required=False,
        allow_blank=True,
        allow_null=True,
        error_messages={
            "invalid": gettext_lazy(
                "Escriba solo dígitos, espacios, paréntesis o guiones, con + al inicio si lleva lada "
                "internacional (de 3 a 20 caracteres), p. ej. 55 1234 5678."
            )
        },
    )


CALLER_KEYS = ("caller_name", "callback_number")


ANONYMOUS_LOCATION_SOURCES = [
    choice for choice in LocationSource.choices if choice[0] not in CALLER_DEVICE_SOURCES
]


class Call089Input(_CallInputBase):
    """089 anonymous tips: no caller fields at all; sending any is refused, not silently dropped."""

    line = serializers.ChoiceField(choices=[(Line.ANONYMOUS.value, Line.ANONYMOUS.label)])
    # The tipster's handset position (AML, carrier) would locate the anonymous caller.
    location_source = serializers.ChoiceField(
        choices=ANONYMOUS_LOCATION_SOURCES,
        required=False,
        allow_blank=True,
        default="",
    )

    def to_internal_value(self, data):
        refused = {
            key: [_("No permitido en la línea 089: las denuncias son anónimas.")]
            for key in CALLER_KEYS
            if key in data
        }
        if refused:
            raise ValidationError(refused)
        return super().to_internal_value(data)


class CallCreateApi(APIView):
    permission_classes = [IsConsoleUser]

    @extend_schema(
        operation_id="calls_create",
        request=PolymorphicProxySerializer(
            component_name="CallCreateInput",
            serializers={"911": Call911Input, "089": Call089Input},
            resource_type_field_name="line",
        ),
        parameters=[IDEMPOTENCY_KEY],
        responses={201: CallCreateOutput, **errors(400, 404, 409, 422)},
        summary=gettext_lazy("Registrar una llamada 911 o denuncia 089"),
    )
    def post(self, request):
        if not isinstance(request.data, dict):
            raise ValidationError({"non_field_errors": [_("Se espera un objeto JSON.")]})
        line = request.data.get("line")
        input_class = {Line.EMERGENCY.value: Call911Input, Line.ANONYMOUS.value: Call089Input}.get(
            line if isinstance(line, str) else None
        )
        if input_class is None:
            raise ValidationError({"line": [_("Línea inválida: use 911 o 089.")]})
        serializer = input_class(data=request.data)
        serializer.is_valid(raise_exception=True)
        return idempotent(request, lambda: self._take_call(request, dict(serializer.validated_data)))

    def _take_call(self, request, data: dict) -> Response:
        incident_type = data.pop("incident_type_code", None)
        link_to_folio = data.pop("incident", None) or None
        call = services.take_call(
            center=request.user.center,
            by=request.user,
            incident_type=incident_type,
            link_to_folio=link_to_folio,
            **data,
        )
        candidates = []
        if call.lat is not None and call.lon is not None:
            candidates = [
                c
                for c in duplicate_candidates(
                    center_id=call.center_id, lat=call.lat, lon=call.lon, incident_type=incident_type
                )
                if c["folio"] != (call.incident.folio if call.incident_id else None)
            ]
        location = call.location_check.summary() if call.location_check else None
        return Response(
            CallCreateOutput({"call": call, "location": location, "duplicate_candidates": candidates}).data,
            status=201,
        )


class CallReleaseApi(APIView):
    permission_classes = [IsConsoleUser]

    @extend_schema(
        operation_id="calls_release",
        parameters=[OpenApiParameter("uid", OpenApiTypes.UUID, OpenApiParameter.PATH)],
        request=None,
        responses={200: CallOutput, **errors(404)},
        summary=gettext_lazy("Liberar la línea"),
    )
    def post(self, request, uid):
        try:
            uid = uuid.UUID(uid)
        except ValueError:
            raise NotFound(_("No existe la llamada %(uid)s.") % {"uid": uid}) from None
        call = services.release_call(uid=uid, center_id=request.user.center_id, by=request.user)
        return Response(CallOutput(call).data)


class CallDuplicatesApi(APIView):
    permission_classes = [IsConsoleUser]

    class DuplicatesQuery(serializers.Serializer):
        lat = FloatField(min_value=-90, max_value=90)
        lon = FloatField(min_value=-180, max_value=180)
        type = IncidentTypeCodeField(required=False)

    class DuplicatesOutput(serializers.Serializer):
        candidates = DuplicateCandidateOutput(many=True)

    @extend_schema(
        operation_id="calls_duplicates",
        parameters=[DuplicatesQuery],
        responses={200: DuplicatesOutput, **errors(400)},
        summary=gettext_lazy("Incidentes abiertos cercanos (posibles duplicados)"),
    )
    def get(self, request):
        query = self.DuplicatesQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        candidates = duplicate_candidates(
            center_id=request.user.center_id,
            lat=query.validated_data["lat"],
            lon=query.validated_data["lon"],
            incident_type=query.validated_data.get("type"),
        )
        return Response(self.DuplicatesOutput({"candidates": candidates}).data)


# --- Incidents ------------------------------------------------------------------------------


class IncidentPagination(LimitOffsetPagination):
    max_limit = 500


class IncidentListApi(APIView):
    permission_classes = [IsConsoleUser]

    @extend_schema(
        operation_id="incidents_list",
        parameters=[
            OpenApiParameter("status", OpenApiTypes.STR, many=True, enum=IncidentStatus.values),
            OpenApiParameter("priority", OpenApiTypes.STR, enum=["ALTA", "MEDIA", "BAJA"]),
            OpenApiParameter(
                "type", OpenApiTypes.STR, description=gettext_lazy("Clave (5), subtipo (3) o tipo (1).")
            ),
            OpenApiParameter(
                "jurisdiction", OpenApiTypes.STR, description=gettext_lazy("CVEGEO de entidad o municipio.")
            ),
            OpenApiParameter("open", OpenApiTypes.BOOL),
            OpenApiParameter("limit", OpenApiTypes.INT),
            OpenApiParameter("offset", OpenApiTypes.INT),
        ],
        responses={200: IncidentListPage, **errors(400)},
        summary=gettext_lazy("Incidentes, por prioridad y antigüedad"),
    )
    def get(self, request):
        open_only = request.query_params.get("open", "").lower() in ("true", "1")
        queryset = incidents_for_list(center_id=request.user.center_id, open_only=open_only)
        filterset = IncidentFilter(request.query_params, queryset=queryset, request=request)
        if not filterset.is_valid():
            raise ValidationError(filterset.errors)
        paginator = IncidentPagination()
        page = paginator.paginate_queryset(filterset.qs, request, view=self)
        return paginator.get_paginated_response(IncidentListOutput(page, many=True).data)


class IncidentDetailApi(APIView):
    permission_classes = [IsConsoleUser]

    class IncidentUpdateInput(serializers.Serializer):
        lat = FloatField(required=False)
        lon = FloatField(required=False)
        location_source = serializers.ChoiceField(choices=LocationSource.choices, required=False)
        confirm_outside_area = serializers.BooleanField(required=False, default=False)
        address = serializers.CharField(max_length=300, required=False, allow_blank=True)
        narrative = serializers.CharField(max_length=10_000, required=False, allow_blank=True)
        incident_type_code = IncidentTypeCodeField(required=False)
        version = serializers.IntegerField(min_value=1, max_value=2_000_000_000, required=False)

        def validate(self, attrs):
            if ("lat" in attrs) != ("lon" in attrs):
                missing = "lon" if "lat" in attrs else "lat"
                raise serializers.ValidationError({missing: [_("Latitud y longitud van juntas.")]})
            return attrs

    @extend_schema(
        operation_id="incidents_retrieve",
        parameters=[FOLIO_PARAM],
        responses={200: IncidentDetailOutput, **errors(404)},
        summary=gettext_lazy("Detalle del incidente (ETag = versión)"),
    )
    def get(self, request, folio):
        folio = folio_of(folio)
        return _incident_response(folio, request.user.center_id)

    @extend_schema(
        operation_id="incidents_update",
        parameters=[FOLIO_PARAM, IF_MATCH],
        request=IncidentUpdateInput,
        responses={200: IncidentDetailOutput, **errors(400, 404, 409, 412)},
        summary=gettext_lazy("Corregir ubicación, narrativa o tipo (requiere versión)"),
    )
    def patch(self, request, folio):
        folio = folio_of(folio)
        serializer = self.IncidentUpdateInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        changes = dict(serializer.validated_data)
        version = expected_version(request, changes.pop("version", None))
        if version is None:
            raise ValidationError({"version": [_("Indique la versión leída (campo version o If-Match).")]})
        if "incident_type_code" in changes:
            changes["incident_type"] = changes.pop("incident_type_code")
        services.update_incident(
            folio=folio,
            center_id=request.user.center_id,
            by=request.user,
            expected_version=version,
            **changes,
        )
        return _incident_response(folio, request.user.center_id)


class IncidentNoteCreateApi(APIView):
    permission_classes = [IsConsoleUser]

    class NoteInput(serializers.Serializer):
        text = serializers.CharField(max_length=4000)

    @extend_schema(
        operation_id="incidents_notes_create",
        parameters=[FOLIO_PARAM],
        request=NoteInput,
        responses={201: TimelineEntryOutput, **errors(400, 404)},
        summary=gettext_lazy("Agregar nota a la bitácora"),
    )
    def post(self, request, folio):
        folio = folio_of(folio)
        serializer = self.NoteInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        entry = services.add_note(
            folio=folio, center_id=request.user.center_id, by=request.user, **serializer.validated_data
        )
        return Response(TimelineEntryOutput(entry).data, status=201)


class PlaceOutput(serializers.Serializer):
    state = serializers.CharField(allow_null=True)
    state_cvegeo = serializers.CharField(allow_null=True)
    municipality = serializers.CharField(allow_null=True)
    municipality_cvegeo = serializers.CharField(allow_null=True)


class LimitsOutput(serializers.Serializer):
    max_eta_s = serializers.IntegerField()
    max_distance_km = FloatField()


class _UnitDistanceOutput(serializers.Serializer):
    unit_id = serializers.IntegerField()
    callsign = serializers.CharField()
    agency = serializers.CharField()
    beyond_limit = serializers.BooleanField(help_text=gettext_lazy("Más allá del límite de ETA o distancia."))
    limit_reason = serializers.ChoiceField(choices=["eta", "distance"], allow_null=True)
    jurisdiction = PlaceOutput()


class RecommendedUnitOutput(_UnitDistanceOutput):
    lat = FloatField()
    lon = FloatField()
    distance_km = FloatField()
    eta_s = FloatField()
    position_age_s = FloatField()


class RecommendationRequirementOutput(serializers.Serializer):
    capability = serializers.CharField(allow_null=True)
    count = serializers.IntegerField()
    assigned = serializers.IntegerField(help_text="Units already working the incident that cover it.")
    candidates = RecommendedUnitOutput(many=True)
    suggested = RecommendedUnitOutput(many=True)
    only_beyond_limit = serializers.BooleanField(
        help_text=gettext_lazy("Todas las candidatas están más allá del límite: no hay sugerida.")
    )


class RecommendationsOutput(serializers.Serializer):
    folio = serializers.CharField()
    plan = serializers.DictField(child=serializers.IntegerField())
    requirements = RecommendationRequirementOutput(many=True)
    suggested_unit_ids = serializers.ListField(child=serializers.IntegerField())
    limits = LimitsOutput()
    incident_jurisdiction = PlaceOutput()
    handled_by_center = serializers.CharField(
        help_text="The centre that took the incident over ('' when none): then nothing is suggested."
    )


class IncidentRecommendationsApi(APIView):
    permission_classes = [IsDispatcher]

    @extend_schema(
        operation_id="incidents_recommendations",
        parameters=[FOLIO_PARAM],
        responses={200: RecommendationsOutput, **errors(400, 404)},
        summary=gettext_lazy("Unidades recomendadas por tiempo estimado de llegada"),
    )
    def get(self, request, folio):
        folio = folio_of(folio)
        incident = incident_get_for_recommendation(folio=folio, center_id=request.user.center_id)
        # The service's answer is plain JSON types shaped as RecommendationsOutput (the schema): rendered as
        # is, without the serializer's per-field pass (tests/test_recommend_ranking.py checks both agree).
        return Response(recommend_units(incident=incident))


class AssignmentCreateApi(APIView):
    permission_classes = [IsDispatcher]

    class AssignmentCreateInput(serializers.Serializer):
        unit_id = serializers.IntegerField(min_value=1, max_value=2**62)

    @extend_schema(
        operation_id="incidents_assignments_create",
        parameters=[FOLIO_PARAM],
        request=AssignmentCreateInput,
        responses={201: AssignmentOutput, **errors(400, 404, 409)},
        summary=gettext_lazy("Despachar una unidad"),
    )
    def post(self, request, folio):
        folio = folio_of(folio)
        serializer = self.AssignmentCreateInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        assignment = services.assign_unit(
            folio=folio, center_id=request.user.center_id, by=request.user, **serializer.validated_data
        )
        return Response(AssignmentOutput(assignment).data, status=201)


class DispatchWarningOutput(serializers.Serializer):
    code = serializers.ChoiceField(
        choices=["beyond_limit", "no_position", "stale_position", "missing_capability"]
    )
    message = serializers.CharField()


class DispatchOptionOutput(_UnitDistanceOutput):
    capabilities = serializers.ListField(child=serializers.CharField())
    lat = FloatField(allow_null=True)
    lon = FloatField(allow_null=True)
    distance_km = FloatField(allow_null=True)
    eta_s = FloatField(allow_null=True)
    position_age_s = FloatField(allow_null=True)
    warnings = DispatchWarningOutput(many=True)


class DispatchOptionsOutput(serializers.Serializer):
    folio = serializers.CharField()
    plan = serializers.DictField(child=serializers.IntegerField())
    limits = LimitsOutput()
    incident_jurisdiction = PlaceOutput()
    units = DispatchOptionOutput(many=True)


class IncidentDispatchOptionsApi(APIView):
    permission_classes = [IsDispatcher]

    class OptionsQuery(serializers.Serializer):
        q = serializers.CharField(max_length=32, required=False, allow_blank=True, default="")
        limit = serializers.IntegerField(min_value=1, max_value=500, required=False, default=20)

    @extend_schema(
        operation_id="incidents_dispatch_options",
        parameters=[FOLIO_PARAM, OptionsQuery],
        responses={200: DispatchOptionsOutput, **errors(400, 404)},
        summary=gettext_lazy("Unidades disponibles para despacho manual, con distancia, ETA y advertencias"),
    )
    def get(self, request, folio):
        folio = folio_of(folio)
        query = self.OptionsQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        incident = incident_get(folio=folio, center_id=request.user.center_id)
        return Response(
            DispatchOptionsOutput(dispatch_options(incident=incident, **query.validated_data)).data
        )


class IncidentDispatchApi(APIView):
    permission_classes = [IsDispatcher]

    class DispatchInput(serializers.Serializer):
        unit_ids = serializers.ListField(
            child=serializers.IntegerField(min_value=1, max_value=2**62), required=False, max_length=50
        )
        callsigns = serializers.ListField(
            child=serializers.CharField(max_length=32), required=False, max_length=50
        )

        def validate(self, attrs):
            if not attrs.get("unit_ids") and not attrs.get("callsigns"):
                raise ValidationError({"unit_ids": [_("Indique unidades (unit_ids o callsigns).")]})
            return attrs

    class DispatchOutput(serializers.Serializer):
        assignments = AssignmentOutput(many=True)
        warnings = serializers.DictField(
            child=DispatchWarningOutput(many=True),
            help_text=gettext_lazy("Advertencias por indicativo (capacidad, límite, posición)."),
        )

    @extend_schema(
        operation_id="incidents_dispatch",
        parameters=[FOLIO_PARAM],
        request=DispatchInput,
        responses={201: DispatchOutput, **errors(400, 404, 409)},
        summary=gettext_lazy("Despachar una o varias unidades (todas o ninguna)"),
    )
    def post(self, request, folio):
        folio = folio_of(folio)
        serializer = self.DispatchInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        center_id = request.user.center_id
        unit_ids = list(serializer.validated_data.get("unit_ids") or [])
        callsigns = serializer.validated_data.get("callsigns") or []
        if callsigns:
            unit_ids += unit_ids_for_callsigns(center_id=center_id, callsigns=callsigns)
        incident = incident_get_for_recommendation(folio=folio, center_id=center_id)
        # Warnings are worked out before the write (the units are still available then).
        options = dispatch_options(incident=incident, unit_ids=unit_ids, limit=len(unit_ids))
        assignments = services.assign_units(
            folio=folio, center_id=center_id, unit_ids=unit_ids, by=request.user
        )
        warnings = {o["callsign"]: o["warnings"] for o in options["units"] if o["warnings"]}
        return Response(
            self.DispatchOutput({"assignments": assignments, "warnings": warnings}).data, status=201
        )


class IncidentLocationApi(APIView):
    permission_classes = [IsConsoleUser]

    class LocationInput(serializers.Serializer):
        lat = FloatField()
        lon = FloatField()
        source = serializers.ChoiceField(choices=LocationSource.choices)
        address = serializers.CharField(max_length=300, required=False, allow_blank=True)
        place = serializers.CharField(
            max_length=300,
            required=False,
            allow_blank=True,
            default="",
            help_text=gettext_lazy("Nombre del candidato elegido (bitácora)."),
        )
        confirm_outside_area = serializers.BooleanField(required=False, default=False)
        version = serializers.IntegerField(min_value=1, max_value=2_000_000_000, required=False)

    @extend_schema(
        operation_id="incidents_location",
        parameters=[FOLIO_PARAM, IF_MATCH],
        request=LocationInput,
        responses={200: IncidentDetailOutput, **errors(400, 404, 409, 412)},
        summary=gettext_lazy("Fijar o corregir la ubicación (candidato del geocodificador, clic en mapa)"),
    )
    def post(self, request, folio):
        folio = folio_of(folio)
        serializer = self.LocationInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        services.set_incident_location(
            folio=folio,
            center_id=request.user.center_id,
            by=request.user,
            expected_version=expected_version(request, data.pop("version", None)),
            **data,
        )
        return _incident_response(folio, request.user.center_id)


class IncidentReopenApi(APIView):
    permission_classes = [IsDispatcher]

    class ReopenInput(serializers.Serializer):
        reason = serializers.CharField(max_length=500)
        version = serializers.IntegerField(min_value=1, max_value=2_000_000_000, required=False)

    @extend_schema(
        operation_id="incidents_reopen",
        parameters=[FOLIO_PARAM, IF_MATCH],
        request=ReopenInput,
        responses={200: IncidentDetailOutput, **errors(400, 404, 409, 412)},
        summary=gettext_lazy("Reabrir un incidente cerrado (queda en la bitácora con su motivo)"),
    )
    def post(self, request, folio):
        folio = folio_of(folio)
        serializer = self.ReopenInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.reopen_incident(
            folio=folio,
            center_id=request.user.center_id,
            by=request.user,
            reason=serializer.validated_data["reason"],
            expected_version=expected_version(request, serializer.validated_data.get("version")),
        )
        return _incident_response(folio, request.user.center_id)


class IncidentCloseApi(APIView):
    permission_classes = [IsDispatcher]

    class IncidentCloseInput(serializers.Serializer):
        disposition = serializers.CharField(max_length=200)
        version = serializers.IntegerField(min_value=1, max_value=2_000_000_000, required=False)

    @extend_schema(
        operation_id="incidents_close",
        parameters=[FOLIO_PARAM, IF_MATCH],
        request=IncidentCloseInput,
        responses={200: IncidentDetailOutput, **errors(400, 404, 409, 412)},
        summary=gettext_lazy("Cerrar el incidente (libera sus unidades)"),
    )
    def post(self, request, folio):
        folio = folio_of(folio)
        serializer = self.IncidentCloseInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.close_incident(
            folio=folio,
            center_id=request.user.center_id,
            by=request.user,
            disposition=serializer.validated_data["disposition"],
            expected_version=expected_version(request, serializer.validated_data.get("version")),
        )
        return _incident_response(folio, request.user.center_id)


# --- Catalogue ------------------------------------------------------------------------------


class IncidentTypeListApi(APIView):
    permission_classes = [IsConsoleUser]

    class IncidentTypeQuery(serializers.Serializer):
        q = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
        tipo = serializers.RegexField(r"^\d$", required=False, allow_blank=True, default="")
        active = serializers.BooleanField(required=False, allow_null=True, default=True)
        limit = serializers.IntegerField(min_value=1, max_value=100, required=False, default=20)

    class IncidentTypeOutput(serializers.Serializer):
        code = serializers.CharField()
        name = serializers.CharField()
        tipo_code = serializers.CharField()
        tipo_name = serializers.CharField()
        subtipo_code = serializers.CharField()
        subtipo_name = serializers.CharField()
        priority = serializers.CharField()
        active = serializers.BooleanField()
        improcedente = serializers.BooleanField(source="is_improcedente")

    @extend_schema(
        operation_id="incident_types_list",
        parameters=[IncidentTypeQuery],
        responses={200: IncidentTypeOutput(many=True), **errors(400)},
        summary=gettext_lazy("Búsqueda en el catálogo CNIE (clave o nombre, sin acentos)"),
    )
    def get(self, request):
        query = self.IncidentTypeQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        found = incident_type_search(**query.validated_data)
        return Response(self.IncidentTypeOutput(found, many=True).data)
