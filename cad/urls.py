from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from accounts.forms import AdminLoginForm, LoginForm
from accounts.views import LogoutView, set_language
from interstate.peer_api import WellKnownApi

admin.site.login_form = AdminLoginForm  # the admin's own login asks for the second factor too

api_v1 = [
    path("", include("incidents.urls")),
    path("", include("units.urls")),
    path("", include("geo.urls")),
    path("", include("dashboard.urls")),
    path("", include("tips.urls")),
    path("", include("sensors.urls")),
    path("", include("interstate.urls")),
    path("", include("console.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("i18n/setlang/", set_language, name="set_language"),
    path("favicon.ico", RedirectView.as_view(url=static("favicon.svg"), permanent=True)),
    path(".well-known/cad-peer", WellKnownApi.as_view(), name="cad-peer"),
    path("api/v1/", include(api_v1)),
    path("login/", auth_views.LoginView.as_view(authentication_form=LoginForm), name="login"),
    path("logout/", LogoutView.as_view(), name="logout"),
    path("dashboard/", include("dashboard.web_urls")),
    path("", include("console.web_urls")),
]

handler400 = "cad.errors.bad_request"
handler404 = "cad.errors.not_found"
handler500 = "cad.errors.server_error"
