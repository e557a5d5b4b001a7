"""The language selector: Django's set_language (cookie) that also saves the choice on the user; logout, which
says so on the login page it leads to."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST
from django.views.i18n import set_language as django_set_language


@require_POST
def set_language(request):
    response = django_set_language(request)
    language = request.POST.get("language", "")
    if (
        request.user.is_authenticated
        and language in dict(settings.LANGUAGES)
        and request.user.language != language
    ):
        request.user.language = language
        request.user.save(update_fields=["language"])
    return response


class LogoutView(auth_views.LogoutView):
    """Django's logout; the login page then says the session was closed (it used to show the bare form, as if
    nothing had happened). The message travels in a cookie: the session it would live in is gone."""

    def post(self, request, *args, **kwargs):
        was_in = request.user.is_authenticated
        response = super().post(request, *args, **kwargs)
        if was_in:
            messages.info(request, _("Sesión cerrada. Puede cerrar esta ventana o volver a entrar."))
        return response
