"""Panic buttons over REST: the HTTP device endpoint for IP buttons (device token) and the console's
button panel (list, detail with history and camera reference)."""

from django.utils.translation import gettext_lazy
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import IsConsoleUser, IsDevice
from cad.api import FloatField, errors
from sensors import selectors
from sensors.models import PanicSignal
from sensors.panic import receive_panic_signal


class PanicSignalOutput(serializers.Serializer):
    kind = serializers.CharField()
    code = serializers.CharField()
    transport = serializers.CharField()
    received_at = serializers.DateTimeField()
    folio = serializers.CharField(source="incident.folio", allow_null=True, default=None)
    merged = serializers.BooleanField()


class PanicButtonOutput(serializers.Serializer):
    id = serializers.IntegerField()
    account = serializers.CharField()
    name = serializers.CharField()
    lat = FloatField()
    lon = FloatField()
    address = serializers.CharField()
    agency = serializers.CharField(source="agency.name", allow_null=True, default=None)
    camera_ref = serializers.CharField()
    online = serializers.BooleanField()
    last_seen_at = serializers.DateTimeField(allow_null=True)
    heartbeat_s = serializers.IntegerField()


class PanicButtonDetailOutput(PanicButtonOutput):
    history = PanicSignalOutput(many=True)


class PanicSignalApi(APIView):
    """An IP panic button (or its gateway) reports a press, an alarm code or a heartbeat."""

    permission_classes = [IsDevice]

    class PanicSignalInput(serializers.Serializer):
        account = serializers.RegexField(r"^[0-9A-Fa-f]{3,16}$")
        code = serializers.RegexField(
            r"^[A-Za-z]{2}$",
            default="PA",
            help_text=gettext_lazy("Código SIA: PA = pánico, RP = prueba/latido."),
        )

    class PanicSignalResult(serializers.Serializer):
        kind = serializers.CharField()
        folio = serializers.CharField(allow_null=True)
        merged = serializers.BooleanField()

    @extend_schema(
        operation_id="panic_signal",
        request=PanicSignalInput,
        responses={202: PanicSignalResult, **errors(400, 404)},
        summary=gettext_lazy("Señal de un botón de pánico IP (activación o latido)"),
    )
    def post(self, request):
        data = self.PanicSignalInput(data=request.data)
        data.is_valid(raise_exception=True)
        signal = receive_panic_signal(
            **data.validated_data, transport=PanicSignal.Transport.HTTP, center_id=request.user.center_id
        )
        result = {"kind": "heartbeat", "folio": None, "merged": False}
        if signal is not None:
            folio = signal.incident.folio if signal.incident_id else None
            result = {"kind": signal.kind, "folio": folio, "merged": signal.merged}
        return Response(self.PanicSignalResult(result).data, status=202)


class PanicButtonListApi(APIView):
    permission_classes = [IsConsoleUser]

    @extend_schema(
        operation_id="panic_buttons",
        responses={200: PanicButtonOutput(many=True)},
        summary=gettext_lazy("Botones de pánico del centro (estado de supervisión)"),
    )
    def get(self, request):
        return Response(
            PanicButtonOutput(selectors.panic_button_list(center_id=request.user.center_id), many=True).data
        )


class PanicButtonDetailApi(APIView):
    permission_classes = [IsConsoleUser]

    @extend_schema(
        operation_id="panic_button_detail",
        parameters=[OpenApiParameter("button_id", int, OpenApiParameter.PATH)],
        responses={200: PanicButtonDetailOutput, **errors(404)},
        summary=gettext_lazy("Botón de pánico con su historial y cámara"),
    )
    def get(self, request, button_id: int):
        button = selectors.panic_button_get(button_id=button_id, center_id=request.user.center_id)
        button.history = selectors.panic_history(button=button)
        return Response(PanicButtonDetailOutput(button).data)
