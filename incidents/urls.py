from django.urls import path

from incidents import api

urlpatterns = [
    path("calls/", api.CallCreateApi.as_view(), name="call-create"),
    path("calls/duplicates", api.CallDuplicatesApi.as_view(), name="call-duplicates"),
    path("calls/<str:uid>/release", api.CallReleaseApi.as_view(), name="call-release"),
    path("incidents/", api.IncidentListApi.as_view(), name="incident-list"),
    path("incidents/<str:folio>/", api.IncidentDetailApi.as_view(), name="incident-detail"),
    path("incidents/<str:folio>/notes", api.IncidentNoteCreateApi.as_view(), name="incident-notes"),
    path(
        "incidents/<str:folio>/recommendations",
        api.IncidentRecommendationsApi.as_view(),
        name="incident-recommendations",
    ),
    path("incidents/<str:folio>/assignments", api.AssignmentCreateApi.as_view(), name="incident-assignments"),
    path("incidents/<str:folio>/dispatch", api.IncidentDispatchApi.as_view(), name="incident-dispatch"),
    path(
        "incidents/<str:folio>/dispatch-options",
        api.IncidentDispatchOptionsApi.as_view(),
        name="incident-dispatch-options",
    ),
    path("incidents/<str:folio>/location", api.IncidentLocationApi.as_view(), name="incident-location"),
    path("incidents/<str:folio>/close", api.IncidentCloseApi.as_view(), name="incident-close"),
    path("incidents/<str:folio>/reopen", api.IncidentReopenApi.as_view(), name="incident-reopen"),
    path("incident-types/", api.IncidentTypeListApi.as_view(), name="incident-type-list"),
]
