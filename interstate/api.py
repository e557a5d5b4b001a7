"""Interstate for this centre's consoles (session or token; role-checked). Thin: parse, call a service or a
selector, serialize. Peer-facing endpoints are in interstate.peer_api."""

from datetime import timedelta

from django.utils import timezone
from django.utils.translation import gettext_lazy
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import IsConsoleUser, IsDispatcher, IsSupervisor
from cad.api import FloatField, LimitOffsetPagination, errors
from incidents.api import FOLIO_PARAM, folio_of
from incidents.models import IncidentStatus
from incidents.selectors import incident_get
from interstate import detection, services
from interstate.models import Escalation, EscalationKind, Peer, PeerRequestLog
from interstate.selectors import (
    audit_entries,
    escalation_summary,
    escalations_for_incident,
    peers_for_console,
    queue_facts,
    response_times,
)


class PeerOutput(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=Peer.Kind.choices)
    enabled = serializers.BooleanField(
        required=False, help_text="In an escalation: false while an administrator has the link disabled."
    )


class RemoteResourceOutput(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    type = serializers.CharField()
    status = serializers.CharField()
    status_internal = serializers.CharField()
    active = serializers.BooleanField()
    updated_at = serializers.CharField(allow_null=True)


class EscalationOutput(serializers.Serializer):
    id = serializers.IntegerField()
    request_id = serializers.CharField()
    folio = serializers.CharField()
    peer = PeerOutput()
    direction = serializers.ChoiceField(choices=["outbound", "inbound"])
    kind = serializers.ChoiceField(choices=EscalationKind.choices)
    state = serializers.ChoiceField(
        choices=["pending", "sent", "accepted", "rejected", "failed", "cancelled", "closed"]
    )
    reason = serializers.CharField()
    last_error = serializers.CharField()
    attempts = serializers.IntegerField(help_text=gettext_lazy("Intentos del primer mensaje pendiente."))
    remote_folio = serializers.CharField()
    remote_status = serializers.CharField()
    remote_resources = RemoteResourceOutput(many=True)
    remote_call_at = serializers.DateTimeField(
        allow_null=True, help_text="Inbound: when the emergency call reached the sender (its EIDO)."
    )
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class FlagOutput(serializers.Serializer):
    peer = serializers.CharField()
    name = serializers.CharField()
    reason = serializers.ChoiceField(choices=["inside", "near_border"])
    distance_km = FloatField()


class IncidentInterstateOutput(serializers.Serializer):
    folio = serializers.CharField()
    origin_center = serializers.CharField()
    origin_folio = serializers.CharField()
    escalations = EscalationOutput(many=True)
    flags = FlagOutput(many=True)


class QueueFactsOutput(serializers.Serializer):
    class Entry(serializers.Serializer):
        folio = serializers.CharField()
        escalations = EscalationOutput(many=True)
        flags = FlagOutput(many=True)

    incidents = Entry(many=True)


ESCALATION_ID = OpenApiParameter("escalation_id", OpenApiTypes.INT, OpenApiParameter.PATH)


class PeerListApi(APIView):
    permission_classes = [IsConsoleUser]

    @extend_schema(
        operation_id="interstate_peers_list",
        responses={200: PeerOutput(many=True), **errors()},
        summary=gettext_lazy("Centros pares habilitados (menú de escalamiento)"),
    )
    def get(self, request):
        return Response(PeerOutput(peers_for_console(), many=True).data)


class IncidentInterstateApi(APIView):
    permission_classes = [IsConsoleUser]

    @extend_schema(
        operation_id="incidents_interstate_retrieve",
        parameters=[FOLIO_PARAM],
        responses={200: IncidentInterstateOutput, **errors(404)},
        summary=gettext_lazy("Escalamientos del incidente y centros pares que la detección marca"),
    )
    def get(self, request, folio):
        incident = incident_get(folio=folio_of(folio), center_id=request.user.center_id)
        data = {
            "folio": incident.folio,
            "origin_center": incident.origin_center,
            "origin_folio": incident.origin_folio,
            "escalations": escalations_for_incident(incident_id=incident.id),
            # A closed incident cannot be escalated (the service refuses it): no peer is offered.
            "flags": []
            if incident.status == IncidentStatus.CLOSED
            else detection.flags_for(incident.lat, incident.lon, exclude_codes=(incident.origin_center,)),
        }
        return Response(IncidentInterstateOutput(data).data)


class QueueFactsApi(APIView):
    permission_classes = [IsConsoleUser]

    @extend_schema(
        operation_id="interstate_queue_retrieve",
        responses={200: QueueFactsOutput},
        summary=gettext_lazy("Marcas y escalamientos de los incidentes abiertos del centro (para la cola)"),
    )
    def get(self, request):
        incidents = queue_facts(center_id=request.user.center_id)
        return Response(QueueFactsOutput({"incidents": incidents}).data)


class EscalationCreateApi(APIView):
    permission_classes = [IsConsoleUser]

    class EscalationCreateInput(serializers.Serializer):
        peer = serializers.CharField(max_length=16)
        kind = serializers.ChoiceField(
            choices=EscalationKind.choices, default=EscalationKind.REQUEST_FOR_SERVICE
        )
        reason = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")

    @extend_schema(
        operation_id="incidents_escalations_create",
        parameters=[FOLIO_PARAM],
        request=EscalationCreateInput,
        responses={201: EscalationOutput, **errors(400, 404, 409)},
        summary=gettext_lazy("Escalar el incidente a un centro par (solicitud de servicio o aviso)"),
    )
    def post(self, request, folio):
        serializer = self.EscalationCreateInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        escalation = services.escalate_incident(
            folio=folio_of(folio),
            center_id=request.user.center_id,
            peer_code=data["peer"],
            kind=data["kind"],
            reason=data["reason"],
            by=request.user,
        )
        # A new escalation has made no delivery attempt yet.
        return Response(EscalationOutput(escalation_summary(escalation, attempts=0)).data, status=201)


class _EscalationActionApi(APIView):
    """POST /escalations/<id>/<action>: one service call, the escalation back."""

    service = None

    def act(self, request, escalation_id: int, **kwargs):
        escalation = type(self).service(
            escalation_id=escalation_id, center_id=request.user.center_id, by=request.user, **kwargs
        )
        return Response(EscalationOutput(escalation_summary(escalation)).data)


class ReasonInput(serializers.Serializer):
    reason = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")


class RequiredReasonInput(serializers.Serializer):
    reason = serializers.CharField(max_length=2000)


def _action_schema(operation_id: str, summary: str, request=None):
    return extend_schema(
        operation_id=operation_id,
        parameters=[ESCALATION_ID],
        request=request,
        responses={200: EscalationOutput, **errors(400, 404, 409)},
        summary=summary,
    )


class EscalationAcceptApi(_EscalationActionApi):
    permission_classes = [IsDispatcher]
    service = staticmethod(services.escalation_accept)

    @_action_schema("escalations_accept", gettext_lazy("Aceptar la solicitud de servicio recibida"))
    def post(self, request, escalation_id):
        return self.act(request, escalation_id)


class EscalationRejectApi(_EscalationActionApi):
    permission_classes = [IsDispatcher]
    service = staticmethod(services.escalation_reject)

    @_action_schema(
        "escalations_reject", gettext_lazy("Rechazar la solicitud (con motivo)"), RequiredReasonInput
    )
    def post(self, request, escalation_id):
        serializer = RequiredReasonInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        return self.act(request, escalation_id, **serializer.validated_data)


class EscalationRetryApi(_EscalationActionApi):
    permission_classes = [IsSupervisor]
    service = staticmethod(services.escalation_retry)

    @_action_schema("escalations_retry", gettext_lazy("Reintentar ahora la entrega"))
    def post(self, request, escalation_id):
        return self.act(request, escalation_id)


class EscalationCancelApi(_EscalationActionApi):
    permission_classes = [IsSupervisor]
    service = staticmethod(services.escalation_cancel)

    @_action_schema("escalations_cancel", gettext_lazy("Cancelar el escalamiento enviado"), ReasonInput)
    def post(self, request, escalation_id):
        serializer = ReasonInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        return self.act(request, escalation_id, **serializer.validated_data)


class AuditEntryOutput(serializers.Serializer):
    id = serializers.IntegerField()
    at = serializers.DateTimeField()
    peer = serializers.CharField(source="peer_code")
    direction = serializers.CharField()
    method = serializers.CharField()
    path = serializers.CharField()
    action = serializers.CharField()
    request_id = serializers.CharField()
    incident_folio = serializers.CharField()
    status_code = serializers.IntegerField(allow_null=True)
    result = serializers.CharField()
    remote_addr = serializers.CharField()
    detail = serializers.CharField()


class AuditListApi(APIView):
    permission_classes = [IsSupervisor]

    class AuditQuery(serializers.Serializer):
        peer = serializers.CharField(max_length=16, required=False)
        direction = serializers.ChoiceField(choices=PeerRequestLog.Direction.choices, required=False)
        result = serializers.CharField(max_length=64, required=False)

    class AuditPage(serializers.Serializer):
        count = serializers.IntegerField()
        next = serializers.URLField(allow_null=True)
        previous = serializers.URLField(allow_null=True)
        results = AuditEntryOutput(many=True)

    @extend_schema(
        operation_id="interstate_audit_list",
        parameters=[
            AuditQuery,
            OpenApiParameter("limit", OpenApiTypes.INT),
            OpenApiParameter("offset", OpenApiTypes.INT),
        ],
        responses={200: AuditPage, **errors(400)},
        summary=gettext_lazy(
            "Bitácora de peticiones entre centros (entrantes y salientes, también las rechazadas)"
        ),
    )
    def get(self, request):
        query = self.AuditQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(audit_entries(**query.validated_data), request, view=self)
        return paginator.get_paginated_response(AuditEntryOutput(page, many=True).data)


class ResponseTimesOutput(serializers.Serializer):
    peer = serializers.CharField()
    peer_name = serializers.CharField()
    direction = serializers.ChoiceField(choices=Escalation.Direction.choices)
    escalations = serializers.IntegerField(help_text="Escalations requested in the window (both kinds).")
    requests = serializers.IntegerField(help_text="Of them, requests for service (they get an answer).")
    accepted = serializers.IntegerField()
    rejected = serializers.IntegerField()
    unanswered = serializers.IntegerField(help_text="Requests for service still waiting for an answer.")
    withdrawn = serializers.IntegerField(
        help_text="Requests for service cancelled by their sender or failed before any answer "
        "(accepted + rejected + withdrawn + unanswered = requests)."
    )
    delivery_p50_s = FloatField(allow_null=True, help_text="Request → the peer took it (outbound only).")
    delivery_p90_s = FloatField(allow_null=True)
    answer_p50_s = FloatField(
        allow_null=True, help_text="Request → accepted or rejected (outbound: by the peer; inbound: by us)."
    )
    answer_p90_s = FloatField(allow_null=True)


class ResponseTimesApi(APIView):
    permission_classes = [IsSupervisor]

    class Query(serializers.Serializer):
        hours = serializers.IntegerField(min_value=1, max_value=24 * 31, default=24)

    @extend_schema(
        operation_id="interstate_response_times",
        parameters=[Query],
        responses={200: ResponseTimesOutput(many=True), **errors(400)},
        summary=gettext_lazy("Tiempos de respuesta entre centros, por centro y sentido"),
    )
    def get(self, request):
        query = self.Query(data=request.query_params)
        query.is_valid(raise_exception=True)
        since = timezone.now() - timedelta(hours=query.validated_data["hours"])
        rows = response_times(center_id=request.user.center_id, since=since)
        return Response(ResponseTimesOutput(rows, many=True).data)
