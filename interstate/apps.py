from django.apps import AppConfig


class InterstateConfig(AppConfig):
    name = "interstate"
    verbose_name = "Interconexión entre estados"
