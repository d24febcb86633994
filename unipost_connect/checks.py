"""System checks for ``settings.UNIPOST_CONNECT``. Ids are stable and never reused."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.utils.functional import Promise
from django.utils.module_loading import import_string

from . import bounds
from .conf import DEFAULTS
from .contract import DEFAULT_BASE_URL
from .models import ConnectSession
from .platforms import ALL_PLATFORMS
from .validators import is_http_url

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
    unknown_keys = sorted(str(key) for key in set(raw) - set(DEFAULTS))
    if unknown_keys:
        errors.append(
            Warning(
                f"UNIPOST_CONNECT has unknown keys: {', '.join(unknown_keys)}.",
                hint="Check their spelling; unknown keys are ignored. " + DOCS,
                id="unipost_connect.W003",
            )
        )
    errors += _check_api_key(raw.get("API_KEY"))
    base_url = raw.get("API_BASE_URL", DEFAULTS["API_BASE_URL"])
    if not isinstance(base_url, str) or not is_http_url(base_url):
        errors.append(
            Error(
                f"UNIPOST_CONNECT['API_BASE_URL'] is not an http(s) URL: {_show(base_url)}.",
                hint=f"Leave it unset for {DEFAULT_BASE_URL}, or give the full URL.",
                id="unipost_connect.E003",
            )
        )
    errors += _check_platforms(raw.get("PLATFORMS", ALL_PLATFORMS))
    errors += _check_webhook_secret(raw.get("WEBHOOK_SECRET", ""))
    return_base = raw.get("RETURN_BASE_URL")
    if return_base not in (None, "") and (not isinstance(return_base, str) or not is_http_url(return_base)):
        errors.append(
            Error(
                f"UNIPOST_CONNECT['RETURN_BASE_URL'] is not an absolute http(s) URL: {_show(return_base)}.",
                hint="Give the public origin of this site, e.g. 'https://www.example.com', "
                "or leave it unset.",
                id="unipost_connect.E007",
            )
        )
    errors += _check_external_user_id(raw.get("EXTERNAL_USER_ID", DEFAULTS["EXTERNAL_USER_ID"]))
    errors += _check_numbers(raw)
    errors += _check_types(raw)
    errors += _check_profile_id(raw.get("PROFILE_ID"))
    return errors


def _check_profile_id(value: Any) -> list[CheckMessage]:
    # Sent to UniPost and stored on every session: it must fit the column (UniPost's own
    # profile ids are UUIDs).
    if isinstance(value, str) and not bounds.fits(value, ConnectSession, "profile_id"):
        limit = bounds.max_length(ConnectSession, "profile_id")
        return [
            Error(
                f"UNIPOST_CONNECT['PROFILE_ID'] is longer than {limit} characters or contains NUL.",
                hint="Copy the profile id from UniPost's dashboard (a UUID).",
                id="unipost_connect.E012",
            )
        ]
    return []


@register(Tags.compatibility)  # not Tags.database, which runs only on request: no query here
def check_isolation_level(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Exactly-once completion and one start per double click rest on READ COMMITTED: a
    conditional UPDATE that loses a race then sees the winner's row. Read from settings
    only (no query)."""
    warnings: list[CheckMessage] = []
    for alias, database in settings.DATABASES.items():
        level = (database.get("OPTIONS") or {}).get("isolation_level")
        if "postgresql" in str(database.get("ENGINE", "")) and _stricter_than_read_committed(level):
            warnings.append(
                Warning(
                    f"DATABASES['{alias}'] uses isolation level {level!r}; unipost_connect expects "
                    "READ COMMITTED (PostgreSQL's default).",
                    hint="At REPEATABLE READ or SERIALIZABLE, concurrent returns, webhooks and clicks "
                    "fail with serialization errors instead of waiting for each other. " + DOCS,
                    id="unipost_connect.W004",
                )
            )
    return warnings


def _stricter_than_read_committed(level: Any) -> bool:
    name = getattr(level, "name", None)  # psycopg's IsolationLevel
    if name is not None:
        return name in ("REPEATABLE_READ", "SERIALIZABLE")
    # A plain number: 3 is too strict for psycopg 2 and 3 alike, 4 is psycopg's SERIALIZABLE
    # (2 is REPEATABLE READ for psycopg 2 but READ COMMITTED for psycopg 3: not judged).
    return level in (3, 4)


def _show(value: Any) -> str:
    """A setting's value for a message, shortened (and never a whole secret)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _check_api_key(api_key: Any) -> list[CheckMessage]:
    if not isinstance(api_key, str) or not api_key.strip():
        return [
            Error(
                "UNIPOST_CONNECT['API_KEY'] is not set (or is not a string).",
                hint="Set it to your UniPost workspace API key (up_live_… or up_test_…), "
                "e.g. from an environment variable.",
                id="unipost_connect.E002",
            )
        ]
    key = api_key.strip()
    if not (key.isascii() and key.isprintable()):
        # An HTTP header cannot carry it: every call to UniPost would fail.
        return [
            Error(
                "UNIPOST_CONNECT['API_KEY'] contains characters that cannot be sent in an HTTP header.",
                hint="Copy the key again: an invisible character (e.g. a zero-width space) came with it.",
                id="unipost_connect.E011",
            )
        ]
    if not key.startswith(("up_live_", "up_test_")) or any(ch.isspace() for ch in key):
        # Never echo the key itself.
        return [
            Warning(
                "UNIPOST_CONNECT['API_KEY'] does not look like a UniPost key.",
                hint="UniPost keys start with up_live_ or up_test_ and have no spaces; "
                "check you copied the whole key.",
                id="unipost_connect.W002",
            )
        ]
    return []


def _check_platforms(platforms: Any) -> list[CheckMessage]:
    is_list = isinstance(platforms, (list, tuple, set, frozenset))
    if not is_list or not platforms:
        return [
            Error(
                "UNIPOST_CONNECT['PLATFORMS'] must be a non-empty list of platform names.",
                hint=f"Choose from: {', '.join(ALL_PLATFORMS)}. Leave it unset for all of them.",
                id="unipost_connect.E004",
            )
        ]
    unknown = sorted(str(p) for p in platforms if p not in ALL_PLATFORMS)
    if unknown:
        return [
            Error(
                f"UNIPOST_CONNECT['PLATFORMS'] has unknown platforms: {', '.join(unknown)}.",
                hint=f"Choose from: {', '.join(ALL_PLATFORMS)} (lowercase).",
                id="unipost_connect.E005",
            )
        ]
    return []


def _check_webhook_secret(secret: Any) -> list[CheckMessage]:
    if isinstance(secret, (list, tuple)):
        bad_items = [item for item in secret if not isinstance(item, str)]
        usable = [item for item in secret if isinstance(item, str) and item.strip()]
    elif isinstance(secret, str) or secret is None:
        bad_items, usable = [], [secret] if secret and secret.strip() else []
    else:
        bad_items, usable = [secret], []
    if bad_items:
        return [
            Error(
                "UNIPOST_CONNECT['WEBHOOK_SECRET'] must be a string or a list of strings.",
                hint="Use a list to accept an old and a new secret while rotating.",
                id="unipost_connect.E006",
            )
        ]
    if not usable:
        return [
            Warning(
                "UNIPOST_CONNECT['WEBHOOK_SECRET'] is empty: every webhook delivery will be refused.",
                hint="Set it to the whsec_… secret UniPost returned when the webhook was created.",
                id="unipost_connect.W001",
            )
        ]
    return []


def _check_external_user_id(external: Any) -> list[CheckMessage]:
    if isinstance(external, str):
        try:
            external = import_string(external)
        except ImportError:
            return [
                Error(
                    f"UNIPOST_CONNECT['EXTERNAL_USER_ID'] cannot be imported: {_show(external)}.",
                    hint="Give a dotted path to a function taking a user and returning a string.",
                    id="unipost_connect.E008",
                )
            ]
    if not callable(external):
        return [
            Error(
                "UNIPOST_CONNECT['EXTERNAL_USER_ID'] must be a callable or a dotted path to one.",
                hint="Give a function taking a user and returning a stable string id.",
                id="unipost_connect.E008",
            )
        ]
    return []


# name -> (least allowed value, whether it must be a whole number)
_NUMBERS: dict[str, tuple[float, bool]] = {
    "CONNECT_TIMEOUT": (0.001, False),
    "READ_TIMEOUT": (0.001, False),
    "MAX_RETRIES": (0, True),
    "RETRY_MAX_WAIT": (0, False),
    "REUSE_MIN_REMAINING": (0, True),
    "WEBHOOK_MAX_BODY_BYTES": (1, True),
}


def _check_numbers(raw: dict[str, Any]) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    for name, (least, whole) in _NUMBERS.items():
        if name not in raw:
            continue
        value = raw[name]
        kinds = (int,) if whole else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or value != value or value < least:
            kind = "a whole number" if whole else "a number"
            errors.append(
                Error(
                    f"UNIPOST_CONNECT['{name}'] must be {kind} of at least {least:g}, not {_show(value)}.",
                    hint=f"Leave it unset for the default ({DEFAULTS[name]!r}).",
                    id="unipost_connect.E009",
                )
            )
    return errors


# name -> accepted types
_TYPES: dict[str, tuple[type, ...]] = {
    "PROFILE_ID": (str, type(None)),
    "ALLOW_QUICKSTART_CREDS": (bool,),
    "SEND_USER_EMAIL": (bool,),
    "REDIRECT_URL": (str, Promise),  # reverse_lazy(...) is fine
}


def _check_types(raw: dict[str, Any]) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    for name, types in _TYPES.items():
        if name in raw and not isinstance(raw[name], types):
            wanted = " or ".join("None" if t is type(None) else t.__name__ for t in types if t is not Promise)
            errors.append(
                Error(
                    f"UNIPOST_CONNECT['{name}'] must be {wanted}, not {type(raw[name]).__name__}.",
                    hint=f"Leave it unset for the default ({DEFAULTS[name]!r}).",
                    id="unipost_connect.E010",
                )
            )
    return errors
