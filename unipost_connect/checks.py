"""System checks for ``settings.UNIPOST_CONNECT``. Ids are stable and never reused."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.utils.module_loading import import_string

from .client import is_http_url
from .conf import ALL_PLATFORMS, DEFAULTS

DOCS = "See the 'Settings' section of unipost_connect's README."


@register(Tags.compatibility)
def check_settings(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[CheckMessage]:
    raw = getattr(settings, "UNIPOST_CONNECT", None)
    if not isinstance(raw, dict):
        return [
            Error(
                "settings.UNIPOST_CONNECT is missing or not a dict.",
                hint="Add UNIPOST_CONNECT = {'API_KEY': '...'} to settings.py. " + DOCS,
                id="unipost_connect.E001",
            )
        ]
    errors: list[CheckMessage] = []
    unknown_keys = sorted(set(raw) - set(DEFAULTS))
    if unknown_keys:
        errors.append(
            Warning(
                f"UNIPOST_CONNECT has unknown keys: {', '.join(unknown_keys)}.",
                hint="Check their spelling; unknown keys are ignored. " + DOCS,
                id="unipost_connect.W003",
            )
        )
    api_key = raw.get("API_KEY")
    if not api_key or not isinstance(api_key, str):
        errors.append(
            Error(
                "UNIPOST_CONNECT['API_KEY'] is not set.",
                hint="Set it to your UniPost workspace API key (up_live_… or up_test_…).",
                id="unipost_connect.E002",
            )
        )
    elif not api_key.startswith(("up_live_", "up_test_")):
        errors.append(
            Warning(
                "UNIPOST_CONNECT['API_KEY'] does not look like a UniPost key.",
                hint="UniPost keys start with up_live_ or up_test_; check you copied the whole key.",
                id="unipost_connect.W002",
            )
        )
    base_url = raw.get("API_BASE_URL", DEFAULTS["API_BASE_URL"])
    if not isinstance(base_url, str) or not is_http_url(base_url):
        errors.append(
            Error(
                f"UNIPOST_CONNECT['API_BASE_URL'] is not an http(s) URL: {base_url!r}.",
                hint="Leave it unset for https://api.unipost.dev, or give the full URL.",
                id="unipost_connect.E003",
            )
        )
    platforms = raw.get("PLATFORMS", ALL_PLATFORMS)
    if isinstance(platforms, str) or not isinstance(platforms, (list, tuple, set, frozenset)):
        errors.append(
            Error(
                "UNIPOST_CONNECT['PLATFORMS'] must be a list of platform names.",
                hint=f"Choose from: {', '.join(ALL_PLATFORMS)}.",
                id="unipost_connect.E004",
            )
        )
    else:
        unknown = sorted(str(p) for p in platforms if p not in ALL_PLATFORMS)
        if unknown:
            errors.append(
                Error(
                    f"UNIPOST_CONNECT['PLATFORMS'] has unknown platforms: {', '.join(unknown)}.",
                    hint=f"Choose from: {', '.join(ALL_PLATFORMS)} (lowercase).",
                    id="unipost_connect.E005",
                )
            )
    secret = raw.get("WEBHOOK_SECRET", "")
    if not secret:
        errors.append(
            Warning(
                "UNIPOST_CONNECT['WEBHOOK_SECRET'] is empty: every webhook delivery will be refused.",
                hint="Set it to the whsec_… secret UniPost returned when the webhook was created.",
                id="unipost_connect.W001",
            )
        )
    elif not isinstance(secret, (str, list, tuple)):
        errors.append(
            Error(
                "UNIPOST_CONNECT['WEBHOOK_SECRET'] must be a string or a list of strings.",
                hint="Use a list to accept an old and a new secret while rotating.",
                id="unipost_connect.E006",
            )
        )
    return_base = raw.get("RETURN_BASE_URL")
    if return_base and (not isinstance(return_base, str) or not is_http_url(return_base)):
        errors.append(
            Error(
                f"UNIPOST_CONNECT['RETURN_BASE_URL'] is not an absolute http(s) URL: {return_base!r}.",
                hint="Give the public origin of this site, e.g. 'https://www.example.com'.",
                id="unipost_connect.E007",
            )
        )
    external = raw.get("EXTERNAL_USER_ID", DEFAULTS["EXTERNAL_USER_ID"])
    if isinstance(external, str):
        try:
            import_string(external)
        except ImportError:
            errors.append(
                Error(
                    f"UNIPOST_CONNECT['EXTERNAL_USER_ID'] cannot be imported: {external!r}.",
                    hint="Give a dotted path to a function taking a user and returning a string.",
                    id="unipost_connect.E008",
                )
            )
    elif not callable(external):
        errors.append(
            Error(
                "UNIPOST_CONNECT['EXTERNAL_USER_ID'] must be a callable or a dotted path to one.",
                id="unipost_connect.E008",
            )
        )
    return errors
