"""LPR over REST: batched read ingest (device token) and the Plate Recognizer Stream webhook mapped onto
it; hits for the consoles (list, open an incident, acknowledge/dismiss); a plate's track for the map;
hotlists for supervisors.

The ingest views skip DRF serializers per item on purpose (throughput): `sensors.lpr.ingest_reads`
validates each read and answers per item."""

import json

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import IsConsoleUser, IsDevice, IsDispatcher, IsSupervisor
from cad.api import FloatField, JSONParser, errors
from incidents.api import IncidentTypeCodeField
from sensors import selectors
from sensors.hotlists import add_entry, remove_entry
from sensors.lpr import ingest_reads, open_incident_from_hit, set_hit_status
from sensors.models import Direction, Hotlist, LprHit
from sensors.plates import normalize_plate


class ReadItemInput(serializers.Serializer):
    """Documentation of one read (validated by sensors.lpr, per item)."""

    reader = serializers.CharField(help_text=gettext_lazy("Clave del arco."))
    plate = serializers.CharField()
    read_at = serializers.DateTimeField()
    confidence = FloatField(required=False, min_value=0, max_value=1)
    vehicle = serializers.DictField(required=False, help_text=gettext_lazy("make, model, color, type, year"))
    image_ref = serializers.CharField(required=False)


class ReadErrorOutput(serializers.Serializer):
    index = serializers.IntegerField()
    status = serializers.IntegerField()
    code = serializers.CharField()
    message = serializers.CharField()
    fields = serializers.DictField()


class IngestOutput(serializers.Serializer):
    accepted = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    hits = serializers.IntegerField()
    errors = ReadErrorOutput(many=True)


def _ingest_response(request, items) -> Response:
    result = ingest_reads(center_id=request.user.center_id, items=items, by=request.user)
    body = {
        "accepted": result.accepted,
        "duplicates": result.duplicates,
        "hits": len(result.hits),
        "errors": result.errors,
    }
    return Response(body, status=202 if result.accepted or result.duplicates or not result.errors else 400)


class LprReadIngestApi(APIView):
    permission_classes = [IsDevice]

    @extend_schema(
        operation_id="lpr_reads",
        request=inline_serializer("LprReadBatchInput", {"reads": ReadItemInput(many=True)}),
        responses={202: IngestOutput, 400: IngestOutput, **errors(413)},
        summary=gettext_lazy("Lote de lecturas de placas (errores por elemento)"),
        description=gettext_lazy(
            "202 si se aceptó al menos una lectura; cada lectura rechazada aparece en `errors` con su índice, "
            "estado (400 inválida, 404 arco desconocido) y campos. Una lectura repetida se cuenta en `duplicates`."
        ),
    )
    def post(self, request):
        reads = request.data.get("reads") if isinstance(request.data, dict) else None
        if not isinstance(reads, list):
            raise ValidationError({"reads": [_("Se espera una lista de lecturas.")]})
        return _ingest_response(request, reads)


class PlateRecognizerWebhookApi(APIView):
    """Plate Recognizer Stream webhook (`webhook_targets` with `webhook_header = Authorization: Token …`).
    JSON body, or multipart with the JSON in the `json` field when Stream sends images. `camera_id` is the
    reader's code; each result becomes a read."""

    permission_classes = [IsDevice]
    parser_classes = [JSONParser, MultiPartParser]  # cad.api's: too-deep JSON is a 400

    @extend_schema(
        operation_id="lpr_platerecognizer_webhook",
        request=inline_serializer(
            "PlateRecognizerStreamWebhook",
            {"hook": serializers.DictField(), "data": serializers.DictField()},
        ),
        responses={202: IngestOutput, 400: IngestOutput},
        summary=gettext_lazy("Webhook de Plate Recognizer Stream"),
    )
    def post(self, request):
        body = request.data
        if "json" in body and isinstance(body.get("json"), str):
            try:
                body = json.loads(body["json"])
            except ValueError:
                raise ValidationError({"json": [_("JSON inválido.")]}) from None
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("camera_id"), str):
            raise ValidationError({"data": [_("Falta data.camera_id.")]})
        results = data.get("results") or []
        if not isinstance(results, list):
            raise ValidationError({"data": [_("data.results debe ser una lista.")]})
        return _ingest_response(request, [_from_platerecognizer(data, r) for r in results])


def _best(options, key):
    if isinstance(options, list) and options and isinstance(options[0], dict):
        return options[0].get(key)
    return None


def _from_platerecognizer(data: dict, result) -> dict:
    if not isinstance(result, dict):
        return result
    vehicle = result.get("vehicle") if isinstance(result.get("vehicle"), dict) else {}
    return {
        "reader": data["camera_id"],
        "plate": result.get("plate"),
        "read_at": data.get("timestamp"),
        "confidence": result.get("score"),
        "vehicle": {
            "type": vehicle.get("type"),
            "make": _best(result.get("model_make"), "make"),
            "model": _best(result.get("model_make"), "model"),
            "color": _best(result.get("color"), "color"),
        },
        "image_ref": data.get("filename") or "",
    }


class HitOutput(serializers.Serializer):
    id = serializers.IntegerField()
    plate = serializers.CharField()
    read_plate = serializers.CharField()
    hotlist_kind = serializers.CharField()
    reason = serializers.CharField()
    vehicle = serializers.DictField()
    reader = serializers.CharField(source="reader.code", allow_null=True, default=None)
    place = serializers.CharField()
    lat = FloatField()
    lon = FloatField()
    read_at = serializers.DateTimeField()
    origin = serializers.CharField(
        help_text=gettext_lazy("Centro par cuyo arco leyó la placa (vacío: nuestro).")
    )
    list_owner = serializers.CharField(
        help_text=gettext_lazy("Centro par dueño de la lista compartida (vacío: lista propia).")
    )
    status = serializers.CharField()
    folio = serializers.CharField(source="incident.folio", allow_null=True, default=None)
    created_at = serializers.DateTimeField()


class LprHitListApi(APIView):
    permission_classes = [IsConsoleUser]

    @extend_schema(
        operation_id="lpr_hits",
        parameters=[OpenApiParameter("status", str, enum=LprHit.Status.values, required=False)],
        responses={200: HitOutput(many=True)},
        summary=gettext_lazy("Alertas de placas (más recientes primero)"),
    )
    def get(self, request):
        status = request.query_params.get("status")
        if status and status not in LprHit.Status.values:
            raise ValidationError({"status": [_("Estado desconocido.")]})
        hits = selectors.lpr_hit_list(center_id=request.user.center_id, status=status)[:200]
        return Response(HitOutput(hits, many=True).data)


class LprHitIncidentApi(APIView):
    permission_classes = [IsDispatcher]

    class HitIncidentInput(serializers.Serializer):
        incident_type_code = IncidentTypeCodeField(required=False, allow_null=True)

    @extend_schema(
        operation_id="lpr_hit_incident",
        parameters=[OpenApiParameter("hit_id", int, OpenApiParameter.PATH)],
        request=HitIncidentInput,
        responses={201: HitOutput, **errors(400, 404, 409)},
        summary=gettext_lazy("Abrir un incidente desde una alerta de placa (lleva el vehículo)"),
    )
    def post(self, request, hit_id: int):
        data = self.HitIncidentInput(data=request.data)
        data.is_valid(raise_exception=True)
        hit = open_incident_from_hit(
            hit_id=hit_id,
            center_id=request.user.center_id,
            by=request.user,
            incident_type=data.validated_data.get("incident_type_code"),
        )
        return Response(HitOutput(hit).data, status=201)


class LprHitStatusApi(APIView):
    permission_classes = [IsConsoleUser]

    class HitStatusInput(serializers.Serializer):
        status = serializers.ChoiceField(choices=[LprHit.Status.ACKNOWLEDGED, LprHit.Status.DISMISSED])

    @extend_schema(
        operation_id="lpr_hit_status",
        parameters=[OpenApiParameter("hit_id", int, OpenApiParameter.PATH)],
        request=HitStatusInput,
        responses={200: HitOutput, **errors(400, 404, 409)},
        summary=gettext_lazy("Marcar una alerta de placa como atendida o descartada"),
    )
    def post(self, request, hit_id: int):
        data = self.HitStatusInput(data=request.data)
        data.is_valid(raise_exception=True)
        hit = set_hit_status(
            hit_id=hit_id, center_id=request.user.center_id, by=request.user, **data.validated_data
        )
        return Response(HitOutput(hit).data)


class PlateTrackApi(APIView):
    permission_classes = [IsConsoleUser]

    class PlateTrackPointOutput(serializers.Serializer):
        read_at = serializers.DateTimeField()
        plate = serializers.CharField()
        lat = FloatField()
        lon = FloatField()
        place = serializers.CharField()
        direction = serializers.CharField()
        origin = serializers.CharField()

    @extend_schema(
        operation_id="lpr_plate_track",
        parameters=[
            OpenApiParameter("plate", str, OpenApiParameter.PATH),
            OpenApiParameter("hours", int, required=False),
        ],
        responses={200: PlateTrackPointOutput(many=True), **errors(400)},
        summary=gettext_lazy("Recorrido de una placa (lecturas sucesivas, para el mapa)"),
    )
    def get(self, request, plate: str):
        plate = normalize_plate(plate)
        hours = request.query_params.get("hours", "")
        if not plate:
            raise ValidationError({"plate": [_("Placa inválida: de 4 a 10 letras y dígitos.")]})
        if hours and not (hours.isdigit() and 0 < int(hours) <= 24 * 31):
            raise ValidationError({"hours": [_("Entre 1 y 744 horas.")]})
        track = selectors.plate_track(
            plate=plate, center_id=request.user.center_id, hours=int(hours) if hours else None
        )
        return Response(self.PlateTrackPointOutput(track, many=True).data)


class LprReaderListApi(APIView):
    permission_classes = [IsConsoleUser]

    class ReaderOutput(serializers.Serializer):
        code = serializers.CharField()
        name = serializers.CharField()
        lat = FloatField()
        lon = FloatField()
        direction = serializers.ChoiceField(choices=Direction.choices)
        road = serializers.CharField()
        online = serializers.BooleanField()
        last_seen_at = serializers.DateTimeField(allow_null=True)

    @extend_schema(
        operation_id="lpr_readers",
        responses={200: ReaderOutput(many=True)},
        summary=gettext_lazy("Arcos lectores de placas del centro"),
    )
    def get(self, request):
        return Response(
            self.ReaderOutput(selectors.lpr_reader_list(center_id=request.user.center_id), many=True).data
        )


class HotlistEntryApi(APIView):
    """Add (or update) one plate on a hotlist; remove it. Bulk loads use `manage.py import_hotlist`."""

    permission_classes = [IsSupervisor]

    class EntryInput(serializers.Serializer):
        plate = serializers.CharField(max_length=20)
        reason = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")
        owner = serializers.CharField(max_length=120, required=False, allow_blank=True, default="")
        source_ref = serializers.CharField(max_length=120, required=False, allow_blank=True, default="")
        valid_until = serializers.DateTimeField(required=False, allow_null=True)
        vehicle = serializers.DictField(required=False, default=dict)

    class EntryOutput(serializers.Serializer):
        plate = serializers.CharField()
        reason = serializers.CharField()
        owner = serializers.CharField()
        valid_from = serializers.DateTimeField()
        valid_until = serializers.DateTimeField(allow_null=True)
        vehicle = serializers.DictField()

    @extend_schema(
        operation_id="lpr_hotlist_entry_add",
        parameters=[OpenApiParameter("hotlist_id", int, OpenApiParameter.PATH)],
        request=EntryInput,
        responses={201: EntryOutput, **errors(400, 404)},
        summary=gettext_lazy("Agregar o actualizar una placa en una lista"),
    )
    def post(self, request, hotlist_id: int):
        data = self.EntryInput(data=request.data)
        data.is_valid(raise_exception=True)
        entry = add_entry(
            hotlist_id=hotlist_id, center_id=request.user.center_id, by=request.user, **data.validated_data
        )
        return Response(self.EntryOutput(entry).data, status=201)


class HotlistEntryDeleteApi(APIView):
    permission_classes = [IsSupervisor]

    @extend_schema(
        operation_id="lpr_hotlist_entry_remove",
        parameters=[
            OpenApiParameter("hotlist_id", int, OpenApiParameter.PATH),
            OpenApiParameter("plate", str, OpenApiParameter.PATH),
        ],
        request=None,
        responses={204: None, **errors(404)},
        summary=gettext_lazy("Quitar una placa de una lista"),
    )
    def delete(self, request, hotlist_id: int, plate: str):
        remove_entry(hotlist_id=hotlist_id, center_id=request.user.center_id, plate=plate, by=request.user)
        return Response(status=204)


class HotlistListApi(APIView):
    permission_classes = [IsSupervisor]

    class HotlistOutput(serializers.Serializer):
        id = serializers.IntegerField()
        kind = serializers.ChoiceField(choices=Hotlist.Kind.choices)
        name = serializers.CharField()
        source = serializers.CharField()
        owner = serializers.CharField(source="owner.username")
        shared = serializers.BooleanField()
        active = serializers.BooleanField()
        peer = serializers.CharField(
            help_text=gettext_lazy("Vacío: propia; si no, el centro par que la comparte.")
        )
        entries = serializers.IntegerField(source="entry_count")

    @extend_schema(
        operation_id="lpr_hotlists",
        responses={200: HotlistOutput(many=True)},
        summary=gettext_lazy("Listas de placas de interés"),
    )
    def get(self, request):
        return Response(
            self.HotlistOutput(selectors.hotlist_list(center_id=request.user.center_id), many=True).data
        )
