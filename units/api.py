"""Units, agencies and AVL positions over REST. Thin: parse, call a service or a selector, serialize."""

import math
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import Prefetch
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import IsAvlDevice, IsConsoleUser, IsDispatcher
from cad.api import IF_MATCH, FloatField, errors, expected_version
from cad.errors import NotFound
from geo.locator import place_of
from incidents import services as dispatch
from incidents.models import Assignment
from units.models import Agency, AvlPosition, Unit, UnitStatus
from units.selectors import unit_list_for_board
from units.services import AvlBatchTooLarge, record_positions

UNIT_ID = OpenApiParameter("unit_id", OpenApiTypes.INT, OpenApiParameter.PATH)

# --- Reads ----------------------------------------------------------------------------------


def _units_for_api(*, center_id: int):
    """The board list plus each unit's active assignment (its incident folio), in two extra queries."""
    return unit_list_for_board(center_id=center_id).prefetch_related(
        Prefetch(
            "assignments",
            Assignment.objects.filter(active=True).select_related("incident"),
            to_attr="active_assignments",
        )
    )


def unit_pk(raw) -> int:
    """The unit id of the URL (routed as a string so a malformed id is a JSON 404, not an HTML one)."""
    text = str(raw)
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 2**63:
        raise NotFound(_("No existe la unidad %(id)s.") % {"id": text[:32]})
    return int(text)


def _unit_or_404(*, unit_id, center_id: int) -> Unit:
    unit_id = unit_pk(unit_id)
    unit = _units_for_api(center_id=center_id).filter(pk=unit_id).first()
    if unit is None:
        raise NotFound(_("No existe la unidad %(id)s.") % {"id": unit_id})
    return unit


class AgencyRefOutput(serializers.Serializer):
    id = serializers.IntegerField()
    code = serializers.CharField()
    name = serializers.CharField()
    kind = serializers.CharField()


class UnitOutput(serializers.Serializer):
    id = serializers.IntegerField()
    callsign = serializers.CharField()
    agency = AgencyRefOutput()
    station = serializers.CharField(source="station.name", allow_null=True, default=None)
    capabilities = serializers.SerializerMethodField()
    status = serializers.CharField()
    status_changed_at = serializers.DateTimeField()
    lat = FloatField(allow_null=True)
    lon = FloatField(allow_null=True)
    position_at = serializers.DateTimeField(allow_null=True)
    position_age_s = serializers.SerializerMethodField()
    stale = serializers.SerializerMethodField()
    incident = serializers.SerializerMethodField()
    municipality = serializers.SerializerMethodField(
        help_text=gettext_lazy("Municipio de su última posición {cvegeo, name}, o null.")
    )
    version = serializers.IntegerField()

    def _now(self):
        return self.context.setdefault("now", timezone.now())

    def get_capabilities(self, unit) -> list[str]:
        return [c.code for c in unit.capabilities.all()]

    def get_position_age_s(self, unit) -> float | None:
        if unit.position_at is None:
            return None
        return round((self._now() - unit.position_at).total_seconds(), 1)

    def get_stale(self, unit) -> bool:
        age = self.get_position_age_s(unit)
        return age is None or age > settings.CAD["AVL_STALE_SECONDS"]

    def get_municipality(self, unit) -> dict | None:
        place = place_of(unit.lat, unit.lon)
        if not place["municipality_cvegeo"]:
            return None
        return {"cvegeo": place["municipality_cvegeo"], "name": place["municipality"]}

    def get_incident(self, unit) -> str | None:
        active = getattr(unit, "active_assignments", None)
        if active is None:  # not prefetched (e.g. right after a status change)
            active = list(Assignment.objects.filter(unit=unit, active=True).select_related("incident"))
        return active[0].incident.folio if active else None


class UnitListApi(APIView):
    permission_classes = [IsConsoleUser]

    class UnitListQuery(serializers.Serializer):
        agency = serializers.CharField(
            max_length=16, required=False, help_text=gettext_lazy("Id o código de la corporación.")
        )
        status = serializers.MultipleChoiceField(choices=UnitStatus.choices, required=False)
        capability = serializers.SlugField(max_length=32, required=False)

    @extend_schema(
        operation_id="units_list",
        parameters=[
            OpenApiParameter(
                "agency", OpenApiTypes.STR, description=gettext_lazy("Id o código de la corporación.")
            ),
            OpenApiParameter("status", OpenApiTypes.STR, many=True, enum=UnitStatus.values),
            OpenApiParameter(
                "capability", OpenApiTypes.STR, description=gettext_lazy("Código de capacidad.")
            ),
        ],
        responses={200: UnitOutput(many=True), **errors(400)},
        summary=gettext_lazy("Unidades del centro con antigüedad de su posición"),
    )
    def get(self, request):
        query = self.UnitListQuery(
            data={
                **{k: v for k, v in request.query_params.items() if k in ("agency", "capability")},
                **(
                    {"status": request.query_params.getlist("status")}
                    if "status" in request.query_params
                    else {}
                ),
            }
        )
        query.is_valid(raise_exception=True)
        units = _units_for_api(center_id=request.user.center_id)
        agency = query.validated_data.get("agency")
        if agency:
            units = (
                units.filter(agency_id=int(agency))
                if agency.isascii() and agency.isdigit()
                else units.filter(agency__code=agency)
            )
        if query.validated_data.get("status"):
            units = units.filter(status__in=query.validated_data["status"])
        if query.validated_data.get("capability"):
            units = units.filter(capabilities__code=query.validated_data["capability"])
        return Response(UnitOutput(units, many=True, context={"now": timezone.now()}).data)


class UnitDetailApi(APIView):
    permission_classes = [IsConsoleUser]

    @extend_schema(
        operation_id="units_retrieve",
        parameters=[UNIT_ID],
        responses={200: UnitOutput, **errors(404)},
        summary=gettext_lazy("Unidad"),
    )
    def get(self, request, unit_id):
        return Response(UnitOutput(_unit_or_404(unit_id=unit_id, center_id=request.user.center_id)).data)


class UnitStatusApi(APIView):
    permission_classes = [IsDispatcher]

    class UnitStatusInput(serializers.Serializer):
        status = serializers.ChoiceField(choices=UnitStatus.choices)
        version = serializers.IntegerField(min_value=1, max_value=2_000_000_000, required=False)

    @extend_schema(
        operation_id="units_status_create",
        parameters=[UNIT_ID, IF_MATCH],
        request=UnitStatusInput,
        responses={200: UnitOutput, **errors(400, 404, 409, 412)},
        summary=gettext_lazy("Cambiar el estado de una unidad"),
    )
    def post(self, request, unit_id):
        serializer = self.UnitStatusInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        dispatch.change_unit_status(
            unit_id=unit_pk(unit_id),
            center_id=request.user.center_id,
            to=serializer.validated_data["status"],
            by=request.user,
            expected_version=expected_version(request, serializer.validated_data.get("version")),
        )
        unit = _unit_or_404(unit_id=unit_id, center_id=request.user.center_id)
        response = Response(UnitOutput(unit).data)
        response["ETag"] = f'"{unit.version}"'
        return response


class TrackPointOutput(serializers.Serializer):
    recorded_at = serializers.DateTimeField()
    lat = FloatField()
    lon = FloatField()
    speed_kmh = FloatField(allow_null=True)
    heading = FloatField(allow_null=True)


class UnitTrackApi(APIView):
    permission_classes = [IsConsoleUser]

    class TrackQuery(serializers.Serializer):
        minutes = serializers.IntegerField(min_value=1, max_value=24 * 60, required=False, default=60)

    class TrackOutput(serializers.Serializer):
        unit_id = serializers.IntegerField()
        callsign = serializers.CharField()
        since = serializers.DateTimeField()
        positions = TrackPointOutput(many=True)

    @extend_schema(
        operation_id="units_track",
        parameters=[UNIT_ID, TrackQuery],
        responses={200: TrackOutput, **errors(400, 404)},
        summary=gettext_lazy("Recorrido de la unidad en los últimos N minutos (máx. 24 h)"),
    )
    def get(self, request, unit_id):
        query = self.TrackQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        unit = (
            Unit.objects.filter(pk=unit_pk(unit_id), center_id=request.user.center_id)
            .only("id", "callsign")
            .first()
        )
        if unit is None:
            raise NotFound(_("No existe la unidad %(id)s.") % {"id": unit_id})
        since = timezone.now() - timedelta(minutes=query.validated_data["minutes"])
        points = AvlPosition.objects.filter(unit_id=unit.id, recorded_at__gte=since).order_by("recorded_at")
        return Response(
            {
                "unit_id": unit.id,
                "callsign": unit.callsign,
                "since": serializers.DateTimeField().to_representation(since),
                "positions": TrackPointOutput(points, many=True).data,
            }
        )


class AgencyListApi(APIView):
    permission_classes = [IsConsoleUser]

    class AgencyOutput(serializers.Serializer):
        id = serializers.IntegerField()
        code = serializers.CharField()
        name = serializers.CharField()
        kind = serializers.CharField()
        speed_kmh = FloatField()

    @extend_schema(
        operation_id="agencies_list",
        responses={200: AgencyOutput(many=True)},
        summary=gettext_lazy("Corporaciones"),
    )
    def get(self, request):
        agencies = Agency.objects.filter(center_id=request.user.center_id).order_by("name")
        return Response(self.AgencyOutput(agencies, many=True).data)


# --- AVL ------------------------------------------------------------------------------------

FUTURE_SLACK = timedelta(seconds=60)
OLDEST_YEAR = 2000
MAX_REPORTED_ERRORS = 100


def _number(value) -> float | None:
    """A finite JSON number (bool is not a number here), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def parse_avl_batch(data, *, center_id: int, now: datetime | None = None) -> list[dict]:
    """Validate a batch of AVL fixes without DRF's per-item serializers (too slow for thousands of fixes).

    Returns dicts for `record_positions`; raises ValidationError with per-index field errors,
    `{"positions": {"3": {"lat": ["..."]}}}`, or AvlBatchTooLarge (413) before looking at any item.
    """
    if not isinstance(data, dict) or not isinstance(data.get("positions"), list):
        raise ValidationError({"positions": [_("Se espera una lista de posiciones.")]})
    items = data["positions"]
    limit = settings.CAD["AVL_MAX_BATCH"]
    if len(items) > limit:
        raise AvlBatchTooLarge(
            _("Lote de %(n)d posiciones; el máximo por solicitud es %(max)d.")
            % {"n": len(items), "max": limit},
            fields={"positions": [_("Máximo %(max)d posiciones por lote.") % {"max": limit}]},
        )
    now = now or timezone.now()
    latest_allowed = now + FUTURE_SLACK
    msg = {
        "object": _("Se espera un objeto."),
        "unit": _("Indique unit_id (entero) o callsign."),
        "lat": _("Latitud numérica entre -90 y 90."),
        "lon": _("Longitud numérica entre -180 y 180."),
        "time": _("Fecha y hora ISO-8601 con zona horaria."),
        "future": _("Posición con hora en el futuro."),
        "old": _("Fecha fuera de rango."),
        "speed": _("Velocidad numérica entre 0 y 1000 km/h."),
        "heading": _("Rumbo numérico entre 0 y 360 grados."),
        "callsign": _("Indicativo desconocido en este centro."),
    }
    errors: dict[str, dict[str, list[str]]] = {}
    parsed: list[dict] = []
    by_callsign: dict[str, list[int]] = {}

    for index, item in enumerate(items):
        if not isinstance(item, dict):
            errors[str(index)] = {"non_field_errors": [msg["object"]]}
            continue
        bad: dict[str, list[str]] = {}
        unit_id = item.get("unit_id")
        callsign = item.get("callsign")
        if isinstance(unit_id, int) and not isinstance(unit_id, bool) and 0 < unit_id < 2**62:
            pass
        elif (
            unit_id is None
            and isinstance(callsign, str)
            and 0 < len(callsign) <= 32
            and "\x00" not in callsign
        ):
            by_callsign.setdefault(callsign, []).append(index)
        else:
            bad["unit_id"] = [msg["unit"]]
        lat = _number(item.get("lat"))
        if lat is None or not -90.0 <= lat <= 90.0:
            bad["lat"] = [msg["lat"]]
        lon = _number(item.get("lon"))
        if lon is None or not -180.0 <= lon <= 180.0:
            bad["lon"] = [msg["lon"]]
        recorded_at = None
        raw_time = item.get("recorded_at")
        try:
            recorded_at = datetime.fromisoformat(raw_time) if isinstance(raw_time, str) else None
        except ValueError:
            recorded_at = None
        if recorded_at is None or recorded_at.utcoffset() is None:
            bad["recorded_at"] = [msg["time"]]
        elif recorded_at.year < OLDEST_YEAR:
            bad["recorded_at"] = [msg["old"]]
        elif recorded_at > latest_allowed:
            bad["recorded_at"] = [msg["future"]]
        speed = item.get("speed_kmh")
        if speed is not None:
            speed = _number(speed)
            if speed is None or not 0.0 <= speed <= 1000.0:
                bad["speed_kmh"] = [msg["speed"]]
        heading = item.get("heading")
        if heading is not None:
            heading = _number(heading)
            if heading is None or not 0.0 <= heading <= 360.0:
                bad["heading"] = [msg["heading"]]
        if bad:
            errors[str(index)] = bad
            continue
        # Any offset Python accepts (up to ±23:59) is stored as UTC (PostgreSQL stops at ±15:59).
        recorded_at = recorded_at.astimezone(UTC)
        parsed.append(
            {
                "index": index,
                "unit_id": unit_id,
                "lat": lat,
                "lon": lon,
                "recorded_at": recorded_at,
                "speed_kmh": speed,
                "heading": heading,
            }
        )

    if by_callsign:  # one query resolves every callsign of the batch
        ids = dict(
            Unit.objects.filter(center_id=center_id, callsign__in=list(by_callsign)).values_list(
                "callsign", "id"
            )
        )
        for callsign, indexes in by_callsign.items():
            if callsign not in ids:
                for index in indexes:
                    errors.setdefault(str(index), {})["callsign"] = [msg["callsign"]]
        resolved = {i: ids[c] for c, indexes in by_callsign.items() if c in ids for i in indexes}
        for fix in parsed:
            if fix["unit_id"] is None:
                fix["unit_id"] = resolved.get(fix["index"])

    if errors:
        shown = dict(sorted(errors.items(), key=lambda kv: int(kv[0]))[:MAX_REPORTED_ERRORS])
        raise ValidationError({"positions": shown})
    return parsed


class AvlPositionInput(serializers.Serializer):
    """Documentation only: batches are validated by `parse_avl_batch`."""

    unit_id = serializers.IntegerField(
        required=False, help_text=gettext_lazy("Id de la unidad, o bien callsign.")
    )
    callsign = serializers.CharField(required=False, max_length=32)
    lat = FloatField(min_value=-90, max_value=90)
    lon = FloatField(min_value=-180, max_value=180)
    recorded_at = serializers.DateTimeField(help_text=gettext_lazy("ISO-8601 con zona horaria."))
    speed_kmh = FloatField(required=False, allow_null=True, min_value=0, max_value=1000)
    heading = FloatField(required=False, allow_null=True, min_value=0, max_value=360)


class AvlBatchInput(serializers.Serializer):
    positions = AvlPositionInput(many=True)


class AvlAcceptedOutput(serializers.Serializer):
    accepted = serializers.IntegerField()


class AvlPositionsApi(APIView):
    permission_classes = [IsAvlDevice]

    @extend_schema(
        operation_id="avl_positions_create",
        request=AvlBatchInput,
        responses={202: AvlAcceptedOutput, **errors(400, 413)},
        summary=gettext_lazy("Lote de posiciones AVL (pasarela de dispositivos)"),
    )
    def post(self, request):
        positions = parse_avl_batch(request.data, center_id=request.user.center_id)
        accepted = record_positions(center_id=request.user.center_id, positions=positions)
        return Response({"accepted": accepted}, status=202)
