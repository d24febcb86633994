from __future__ import annotations

from django.apps import AppConfig
from django.core.checks import Tags, register
from django.utils.translation import gettext_lazy as _


class UniPostConnectConfig(AppConfig):
    name = "unipost_connect"
    verbose_name = _("UniPost Connect")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, not at the top: checks reads the models, which need the app
        # registry this method is called from.
        from . import checks

        # Registered here rather than by a decorator at import, so importing checks (a
        # test does) has no side effect. Tags.compatibility, not Tags.database (which runs
        # only on request): neither check makes a query.
        register(checks.check_settings, Tags.compatibility)
        register(checks.check_isolation_level, Tags.compatibility)
