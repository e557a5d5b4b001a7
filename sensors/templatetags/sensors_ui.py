"""Template tags that drop the sensor panels into other apps' pages without those pages' views knowing
about sensors: `{% sensors_console_panel %}` on the dispatch console, `{% sensors_track_form %}` on the
dashboard map."""

from django import template
from django.utils.translation import gettext as _

from accounts.permissions import DISPATCH_ROLES
from sensors.models import Hotlist, PanicSignal

register = template.Library()


@register.inclusion_tag("sensors/console_panel.html", takes_context=True)
def sensors_console_panel(context) -> dict:
    user = context["request"].user
    return {
        "sensors_config": {
            "can_dispatch": user.has_role(*DISPATCH_ROLES),
            "kinds": dict(Hotlist.Kind.choices),
            "signal_kinds": dict(PanicSignal.Kind.choices),
            "strings": {
                "leída %(plate)s": _("leída %(plate)s"),
                "Abrir incidente": _("Abrir incidente"),
                "Atendida": _("Atendida"),
                "Descartar": _("Descartar"),
                "Placa en lista: %(plate)s en %(place)s": _("Placa en lista: %(plate)s en %(place)s"),
                "Lista de %(peer)s": _("Lista de %(peer)s"),
                "Leída en %(peer)s": _("Leída en %(peer)s"),
                "Placa nuestra vista en %(peer)s: %(plate)s en %(place)s": _(
                    "Placa nuestra vista en %(peer)s: %(plate)s en %(place)s"
                ),
                "En línea": _("En línea"),
                "Sin señal": _("Sin señal"),
                "Cámara: %(ref)s": _("Cámara: %(ref)s"),
                "Botón sin señal: %(name)s": _("Botón sin señal: %(name)s"),
            },
        }
    }


@register.inclusion_tag("sensors/track_form.html")
def sensors_track_form() -> dict:
    return {}
