from django.urls import path

from interstate import api, peer_api

urlpatterns = [
    # peer-facing (HMAC-signed)
    path("interstate/messages", peer_api.PeerMessageApi.as_view(), name="interstate-messages"),
    path(
        "interstate/incidents/<str:request_id>",
        peer_api.PeerIncidentApi.as_view(),
        name="interstate-incident",
    ),
    # consoles
    path("interstate/peers", api.PeerListApi.as_view(), name="interstate-peers"),
    path("interstate/queue", api.QueueFactsApi.as_view(), name="interstate-queue"),
    path("interstate/audit", api.AuditListApi.as_view(), name="interstate-audit"),
    path("interstate/response-times", api.ResponseTimesApi.as_view(), name="interstate-response-times"),
    path("incidents/<str:folio>/interstate", api.IncidentInterstateApi.as_view(), name="incident-interstate"),
    path("incidents/<str:folio>/escalations", api.EscalationCreateApi.as_view(), name="incident-escalations"),
    path(
        "escalations/<int:escalation_id>/accept", api.EscalationAcceptApi.as_view(), name="escalation-accept"
    ),
    path(
        "escalations/<int:escalation_id>/reject", api.EscalationRejectApi.as_view(), name="escalation-reject"
    ),
    path("escalations/<int:escalation_id>/retry", api.EscalationRetryApi.as_view(), name="escalation-retry"),
    path(
        "escalations/<int:escalation_id>/cancel", api.EscalationCancelApi.as_view(), name="escalation-cancel"
    ),
]
