from django.urls import path

from dashboard import api

urlpatterns = [
    path("kpis/", api.KpiApi.as_view(), name="kpis"),
    path("exports/incidents.csv", api.IncidentExportApi.as_view(), name="export-incidents"),
    path("exports/monthly.csv", api.MonthlyExportApi.as_view(), name="export-monthly"),
    path("dashboard/map", api.MapSnapshotApi.as_view(), name="dashboard-map"),
    path("dashboard/boundaries", api.BoundariesApi.as_view(), name="dashboard-boundaries"),
]
