"""`manage.py check --deploy`: production needs its own key for the peer secrets at rest."""

from django.conf import settings
from django.core.checks import Error, register


@register(deploy=True)
def interstate_key_set(app_configs, **kwargs):
    if settings.CAD_INTERSTATE_KEY:
        return []
    return [
        Error(
            "CAD_INTERSTATE_KEY is not set: peer secrets are encrypted with a key derived from SECRET_KEY.",
            hint="Set CAD_INTERSTATE_KEY to a long random value (and keep it: the stored secrets need it).",
            id="interstate.E001",
        )
    ]
