from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class InterstateConfig(AppConfig):
    name = "interstate"
    verbose_name = _("Interconexión entre centros")
