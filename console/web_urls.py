from django.urls import path

from console import views

urlpatterns = [
    path("", views.home, name="home"),
    path("console/", views.console, name="console"),
    path("console/intake/", views.intake, name="intake"),
    path("console/intake/089/", views.intake_089, name="intake-089"),
]
