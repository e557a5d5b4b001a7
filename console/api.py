"""The realtime metrics endpoint: counters of the console websocket in this server process."""

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.auth import ServiceTokenAuthentication
from accounts.permissions import IsSupervisor
from console.metrics import metrics_snapshot


class RealtimeMetricsApi(APIView):
    """Counters of the console websocket and of the broadcaster in this server process (connections, replays,
    resyncs, heartbeats, re-joins, rejected frames, broadcasts sent/dropped/failed)."""

    authentication_classes = [ServiceTokenAuthentication, SessionAuthentication]
    permission_classes = [IsSupervisor]

    @extend_schema(
        operation_id="realtime_metrics",
        responses={
            200: inline_serializer(
                "RealtimeMetrics", {key: serializers.IntegerField() for key in sorted(metrics_snapshot())}
            )
        },
        summary="Métricas del canal en tiempo real (por proceso)",
    )
    def get(self, request):
        return Response(metrics_snapshot())
