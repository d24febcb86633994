from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class UniPostConnectConfig(AppConfig):
    name = "unipost_connect"
    verbose_name = _("UniPost Connect")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
