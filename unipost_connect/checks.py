"""System checks for ``settings.UNIPOST_CONNECT``. Ids are stable and never reused.

Each value is read through ``conf``, as the app reads it at use, so a check reports
exactly what would fail there, in the same words: the error's problem is the check's
message and its fix the hint. Registered from ``AppConfig.ready()`` (see ``apps.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning

from . import bounds
from .conf import DEFAULTS, NUMBERS, SettingError, UnknownPlatformError, app_settings
from .models import ConnectSession

DOCS = "See the 'Settings' section of unipost_connect's README."


def check_settings(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[CheckMessage]:
    try:
        configured = app_settings.configured()
    except SettingError as exc:
        # Nothing else can be read: every other message would only repeat this one.
        return [_error(exc, id="unipost_connect.E001")]
    messages = _check_unknown_keys(configured)
    messages += _check_api_key()
    messages += _read("API_BASE_URL", id="unipost_connect.E003")
    messages += _check_platforms()
    messages += _check_webhook_secret()
    messages += _read("RETURN_BASE_URL", id="unipost_connect.E007")
    messages += _read("EXTERNAL_USER_ID", id="unipost_connect.E008")
    messages += _read("CAN_MANAGE_ACCOUNT", id="unipost_connect.E014")
    # RETENTION_DAYS is a number too, kept out of NUMBERS because None is one of its values.
    for name in (*NUMBERS, "RETENTION_DAYS"):
        messages += _read(name, id="unipost_connect.E009")
    for name in ("PROFILE_ID", "ALLOW_QUICKSTART_CREDS", "SEND_USER_EMAIL", "REDIRECT_URL"):
        messages += _read(name, id="unipost_connect.E010")
    messages += _check_profile_id()
    messages += _check_task_backend()
    return messages


def _check_task_backend() -> list[CheckMessage]:
    from . import tasks  # the task framework, only once settings are read

    try:
        alias, _queue = app_settings.TASK_BACKEND, app_settings.TASK_QUEUE
        if alias not in tasks.backend_aliases():
            raise SettingError(
                "TASK_BACKEND",
                f"is {alias!r}, which settings.TASKS does not define "
                f"(it has {', '.join(map(repr, tasks.backend_aliases())) or 'none'})",
                "Name one of the TASKS aliases, or leave it unset for 'default'.",
            )
    except SettingError as exc:
        return [_error(exc, id="unipost_connect.E013")]
    return []


def _error(exc: SettingError, id: str) -> Error:
    return Error(exc.problem, hint=f"{exc.fix} {DOCS}", id=id)


def _read(name: str, id: str) -> list[CheckMessage]:
    """Read ``name`` through conf; a value the app could not use is check ``id``."""
    try:
        getattr(app_settings, name)
    except SettingError as exc:
        return [_error(exc, id=id)]
    return []


def _check_unknown_keys(configured: dict[str, Any]) -> list[CheckMessage]:
    unknown_keys = sorted(str(key) for key in set(configured) - set(DEFAULTS))
    if not unknown_keys:
        return []
    return [
        Warning(
            f"UNIPOST_CONNECT has unknown keys: {', '.join(unknown_keys)}.",
            hint="Check their spelling; unknown keys are ignored. " + DOCS,
            id="unipost_connect.W003",
        )
    ]


def _check_api_key() -> list[CheckMessage]:
    try:
        key = app_settings.API_KEY
    except SettingError as exc:
        return [_error(exc, id="unipost_connect.E002")]
    if not (key.isascii() and key.isprintable()):
        # An HTTP header cannot carry it: every call to UniPost fails (as an
        # authentication error, see the client), so this is an error, not a warning.
        return [
            Error(
                "UNIPOST_CONNECT['API_KEY'] contains characters that cannot be sent in an HTTP header.",
                hint="Copy the key again: an invisible character (e.g. a zero-width space) came with it.",
                id="unipost_connect.E011",
            )
        ]
    messages = _whitespace_warning("API_KEY", [key])
    if not key.startswith(("up_live_", "up_test_")) or any(ch.isspace() for ch in key):
        # Never echo the key itself.
        messages.append(
            Warning(
                "UNIPOST_CONNECT['API_KEY'] does not look like a UniPost key.",
                hint="UniPost keys start with up_live_ or up_test_ and have no spaces; "
                "check you copied the whole key.",
                id="unipost_connect.W002",
            )
        )
    return messages


def _whitespace_warning(name: str, used: list[str]) -> list[CheckMessage]:
    """W005 when a secret as written has whitespace around it, which conf does not use."""
    written = app_settings.get(name)
    entries = written if isinstance(written, (list, tuple)) else [written]
    if all(secret in entries for secret in used):
        return []
    # Never echo the secret itself.
    return [
        Warning(
            f"UNIPOST_CONNECT['{name}'] has whitespace (a space or a newline) around it, which is not used.",
            hint="The value is used without it. Strip it where the setting is read (e.g. "
            "os.environ['…'].strip()), or check the secret was copied whole.",
            id="unipost_connect.W005",
        )
    ]


def _check_platforms() -> list[CheckMessage]:
    try:
        app_settings.PLATFORMS  # noqa: B018  (read only for the errors it raises)
    except UnknownPlatformError as exc:
        return [_error(exc, id="unipost_connect.E005")]
    except SettingError as exc:
        return [_error(exc, id="unipost_connect.E004")]
    return []


def _check_webhook_secret() -> list[CheckMessage]:
    try:
        secrets = app_settings.WEBHOOK_SECRETS
    except SettingError as exc:
        return [_error(exc, id="unipost_connect.E006")]
    if not secrets:
        return [
            Warning(
                "UNIPOST_CONNECT['WEBHOOK_SECRET'] is empty: every webhook delivery will be refused.",
                hint="Set it to the whsec_… secret UniPost returned when the webhook was created.",
                id="unipost_connect.W001",
            )
        ]
    return _whitespace_warning("WEBHOOK_SECRET", secrets)


def _check_profile_id() -> list[CheckMessage]:
    try:
        profile_id = app_settings.PROFILE_ID
    except SettingError:
        return []  # the wrong type: E010
    # Sent to UniPost and stored on every session: it must fit the column (UniPost's own
    # profile ids are UUIDs). Not refused by conf: starting a session refuses it, with
    # its own error code, and the check says so beforehand.
    # A callable's answers are checked as each session starts (INVALID_PROFILE_ID).
    if isinstance(profile_id, str) and not bounds.fits(profile_id, ConnectSession, "profile_id"):
        limit = bounds.max_length(ConnectSession, "profile_id")
        return [
            Error(
                f"UNIPOST_CONNECT['PROFILE_ID'] is longer than {limit} characters or contains NUL.",
                hint="Copy the profile id from UniPost's dashboard (a UUID).",
                id="unipost_connect.E012",
            )
        ]
    return []


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
