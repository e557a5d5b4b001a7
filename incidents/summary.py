"""The incident summary: ONE shape for REST list rows, event payloads and the supervisor map.

The state and the municipality are `{cvegeo, name}` objects (or null) everywhere; times are ISO 8601.
"""

from django.utils.translation import gettext_lazy
from rest_framework import serializers

from cad.api import FloatField
from incidents import lifecycle
from incidents.models import Incident


class JurisdictionRefOutput(serializers.Serializer):
    cvegeo = serializers.CharField()
    name = serializers.CharField()


class IncidentSummaryOutput(serializers.Serializer):
    folio = serializers.CharField()
    status = serializers.CharField()
    priority = serializers.CharField()
    priority_rank = serializers.IntegerField()
    type_code = serializers.CharField()
    type_name = serializers.CharField()
    lat = FloatField(allow_null=True)
    lon = FloatField(allow_null=True)
    address = serializers.CharField()
    location_source = serializers.CharField()
    outside_service_area = serializers.BooleanField()
    state = JurisdictionRefOutput(allow_null=True)
    municipality = JurisdictionRefOutput(allow_null=True)
    call_arrived_at = serializers.DateTimeField(allow_null=True)
    opened_at = serializers.DateTimeField()
    first_dispatched_at = serializers.DateTimeField(allow_null=True)
    first_en_route_at = serializers.DateTimeField(allow_null=True)
    first_on_scene_at = serializers.DateTimeField(allow_null=True)
    closed_at = serializers.DateTimeField(allow_null=True)
    reopened_at = serializers.DateTimeField(allow_null=True)
    timer_since = serializers.SerializerMethodField(
        help_text=gettext_lazy("Inicio del reloj del estado actual (incidents.lifecycle).")
    )
    origin_center = serializers.CharField(
        help_text=gettext_lazy("Centro que pidió el servicio (vacío si es propio).")
    )
    origin_folio = serializers.CharField(
        help_text=gettext_lazy("Folio del incidente en el centro de origen.")
    )
    handled_by_center = serializers.CharField(
        help_text=gettext_lazy(
            "Centro que tomó el incidente a su cargo (aceptó la solicitud de servicio); vacío si lo atiende "
            "este centro. Mientras tanto no corre el reloj de despacho."
        )
    )
    version = serializers.IntegerField()

    def get_timer_since(self, incident) -> str:
        since = lifecycle.timer_since(
            reopened_at=incident.reopened_at,
            call_arrived_at=incident.call_arrived_at,
            opened_at=incident.opened_at,
        )
        return serializers.DateTimeField().to_representation(since)


# One bound serializer for single summaries (every event payload has one): DRF deep-copies a serializer's
# declared fields each time one is made, which cost more than the summary itself. Its fields hold no
# per-call state (the time zone is read at each call), so threads share it.
_SUMMARY = IncidentSummaryOutput()


def incident_summary(incident: Incident) -> dict:
    """The incident as the queue and the map show it (read it with_places())."""
    return dict(_SUMMARY.to_representation(incident))


def incident_summaries(incidents) -> list[dict]:
    return [dict(row) for row in IncidentSummaryOutput(incidents, many=True).data]
