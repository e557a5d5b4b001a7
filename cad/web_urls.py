from django.contrib.auth import views as auth_views
from django.urls import path

from cad import views

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("console/", views.console, name="console"),
    path("console/intake/", views.intake, name="intake"),
    path("console/intake/089/", views.intake_089, name="intake-089"),
]
