from django.urls import path

from dashboard import views

urlpatterns = [
    path("", views.dashboard_page, name="dashboard"),
    path("kpis/", views.kpi_page, name="dashboard-kpis"),
    path("interstate/", views.interstate_page, name="dashboard-interstate"),
]
