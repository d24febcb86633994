"""The ``UNIPOST_CONNECT`` settings dict, read at access time.

Every value is looked up on each access so ``override_settings`` works in tests and
nothing is frozen at import.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from .contract import DEFAULT_BASE_URL
from .platforms import ALL_PLATFORMS

DEFAULTS: dict[str, Any] = {
    "API_KEY": "",
    "API_BASE_URL": DEFAULT_BASE_URL,
    "WEBHOOK_SECRET": "",
    "PROFILE_ID": None,
    "ALLOW_QUICKSTART_CREDS": False,
    "PLATFORMS": ALL_PLATFORMS,
    # Absolute origin used to build return URLs, for sites behind a proxy that
    # does not pass the public host through (e.g. "https://www.example.com").
    "RETURN_BASE_URL": None,
    "EXTERNAL_USER_ID": "unipost_connect.conf.default_external_user_id",
    "SEND_USER_EMAIL": False,
    "REDIRECT_URL": "/",
    "CONNECT_TIMEOUT": 3.05,
    "READ_TIMEOUT": 10.0,
    "MAX_RETRIES": 2,
    "RETRY_MAX_WAIT": 5.0,
    "REUSE_MIN_REMAINING": 600,
    "WEBHOOK_MAX_BODY_BYTES": 256 * 1024,
}


def default_external_user_id(user: Any) -> str:
    """The stable id UniPost knows a local user by: the primary key."""
    return str(user.pk)


def _user_dict() -> dict[str, Any]:
    value = getattr(django_settings, "UNIPOST_CONNECT", {})
    return value if isinstance(value, dict) else {}


class ConnectSettings:
    """Typed view of ``settings.UNIPOST_CONNECT`` with defaults filled in."""

    def get(self, name: str) -> Any:
        return _user_dict().get(name, DEFAULTS[name])

    @property
    def API_KEY(self) -> str:
        key = self.get("API_KEY")
        if not isinstance(key, str) or not key.strip():
            raise ImproperlyConfigured(
                "UNIPOST_CONNECT['API_KEY'] is not set. Add your UniPost workspace API key "
                "(up_live_… or up_test_…) to the UNIPOST_CONNECT dict in settings.py."
            )
        # A key pasted from a file or an env var often carries a trailing newline.
        return key.strip()

    @property
    def API_BASE_URL(self) -> str:
        return str(self.get("API_BASE_URL")).rstrip("/")

    @property
    def WEBHOOK_SECRETS(self) -> list[str]:
        """All accepted signing secrets; a list lets a secret be rotated without downtime."""
        value = self.get("WEBHOOK_SECRET")
        if not value:
            return []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            return []  # reported by check unipost_connect.E006; accept no signature at all
        return [v.strip() for v in value if isinstance(v, str) and v.strip()]

    @property
    def PROFILE_ID(self) -> str | None:
        value = self.get("PROFILE_ID")
        return str(value) if value else None

    @property
    def ALLOW_QUICKSTART_CREDS(self) -> bool:
        return bool(self.get("ALLOW_QUICKSTART_CREDS"))

    @property
    def PLATFORMS(self) -> tuple[str, ...]:
        """The allowed platforms, lowercased, in the order given.

        A string is read as a comma- or space-separated list (check E004 still flags it).
        """
        value = self.get("PLATFORMS")
        if isinstance(value, str):
            value = value.replace(",", " ").split()
        try:
            names = [str(p).strip().lower() for p in value]
        except TypeError:
            return ()
        return tuple(dict.fromkeys(name for name in names if name))

    @property
    def RETURN_BASE_URL(self) -> str | None:
        value = self.get("RETURN_BASE_URL")
        return str(value).rstrip("/") if value else None

    @property
    def EXTERNAL_USER_ID(self) -> Callable[[Any], str]:
        value = self.get("EXTERNAL_USER_ID")
        func: Callable[[Any], str] = import_string(value) if isinstance(value, str) else value
        return func

    @property
    def SEND_USER_EMAIL(self) -> bool:
        return bool(self.get("SEND_USER_EMAIL"))

    @property
    def REDIRECT_URL(self) -> str:
        return str(self.get("REDIRECT_URL"))

    @property
    def TIMEOUT(self) -> tuple[float, float]:
        return (float(self.get("CONNECT_TIMEOUT")), float(self.get("READ_TIMEOUT")))

    @property
    def MAX_RETRIES(self) -> int:
        return int(self.get("MAX_RETRIES"))

    @property
    def RETRY_MAX_WAIT(self) -> float:
        return float(self.get("RETRY_MAX_WAIT"))

    @property
    def REUSE_MIN_REMAINING(self) -> int:
        return int(self.get("REUSE_MIN_REMAINING"))

    @property
    def WEBHOOK_MAX_BODY_BYTES(self) -> int:
        return int(self.get("WEBHOOK_MAX_BODY_BYTES"))


app_settings = ConnectSettings()
