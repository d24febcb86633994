"""The ``UNIPOST_CONNECT`` settings dict, read at access time.

Every value is looked up on each access so ``override_settings`` works in tests and
nothing is frozen at import. A value is returned as configured (defaults filled in),
never repaired: one the app cannot use raises :class:`SettingError`, an
``ImproperlyConfigured`` that names the key and says how to fix it. The system checks
(``checks.py``) read through here too, so ``manage.py check`` reports the same problem
in the same words before anything fails.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.functional import Promise
from django.utils.module_loading import import_string

from . import platforms
from .contract import DEFAULT_BASE_URL
from .validators import is_http_url

DEFAULTS: dict[str, Any] = {
    "API_KEY": "",
    "API_BASE_URL": DEFAULT_BASE_URL,
    "WEBHOOK_SECRET": "",
    "PROFILE_ID": None,
    "ALLOW_QUICKSTART_CREDS": False,
    "PLATFORMS": platforms.ALL_PLATFORMS,
    # Absolute origin used to build return URLs, for sites behind a proxy that
    # does not pass the public host through (e.g. "https://www.example.com").
    "RETURN_BASE_URL": None,
    "EXTERNAL_USER_ID": "unipost_connect.conf.default_external_user_id",
    # Who may disconnect or reconnect an account they can see: f(user, account) -> bool.
    "CAN_MANAGE_ACCOUNT": "unipost_connect.conf.default_can_manage_account",
    "SEND_USER_EMAIL": False,
    "REDIRECT_URL": "/",
    "CONNECT_TIMEOUT": 3.05,
    "READ_TIMEOUT": 10.0,
    "MAX_RETRIES": 2,
    "RETRY_MAX_WAIT": 5.0,
    "REUSE_MIN_REMAINING": 600,
    "WEBHOOK_MAX_BODY_BYTES": 256 * 1024,
    # Django's task framework: the alias of a TASKS backend, and the queue on it.
    "TASK_BACKEND": "default",
    "TASK_QUEUE": "default",
    # Days stored webhook events and finished sessions are kept (manage.py
    # unipost_connect_prune); None keeps them for ever.
    "RETENTION_DAYS": 90,
}

# name -> (least allowed value, whether it must be a whole number)
NUMBERS: dict[str, tuple[float, bool]] = {
    "CONNECT_TIMEOUT": (0.001, False),
    "READ_TIMEOUT": (0.001, False),
    "MAX_RETRIES": (0, True),
    "RETRY_MAX_WAIT": (0, False),
    "REUSE_MIN_REMAINING": (0, True),
    "WEBHOOK_MAX_BODY_BYTES": (1, True),
}


class SettingError(ImproperlyConfigured):
    """A ``UNIPOST_CONNECT`` value the app cannot use.

    ``problem`` names the key and what is wrong, ``fix`` says what to write instead; the
    system checks show them as a check's message and hint. Secrets are described by
    their type only, never quoted.
    """

    def __init__(self, key: str | None, problem: str, fix: str) -> None:
        where = "settings.UNIPOST_CONNECT" if key is None else f"UNIPOST_CONNECT['{key}']"
        self.key = key
        self.problem = f"{where} {problem}."
        self.fix = fix
        super().__init__(f"{self.problem} {fix}")


class UnknownPlatformError(SettingError):
    """``PLATFORMS`` is a list but names a platform UniPost does not serve.

    A class of its own because check E005 reports it apart from E004 (not a list).
    """


def default_external_user_id(user: Any) -> str:
    """The stable id UniPost knows a local user by: the primary key."""
    return str(user.pk)


def default_can_manage_account(user: Any, account: Any) -> bool:
    """Anyone of the account's owner (the same ``EXTERNAL_USER_ID``) may manage it; an
    account stored without an owner key, the user who connected it."""
    from .accounts import owned_by  # the one ownership rule; accounts imports this module

    return owned_by(account, external_user_id=app_settings.owner_key(user), user_id=user.pk)


def _show(value: Any) -> str:
    """A setting's value for a message, shortened (never use it for a secret)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _configured() -> dict[str, Any]:
    value = getattr(django_settings, "UNIPOST_CONNECT", None)
    if not isinstance(value, dict):
        state = "is not set" if value is None else f"must be a dict, not {type(value).__name__}"
        raise SettingError(
            None,
            state,
            "Add UNIPOST_CONNECT = {'API_KEY': 'up_live_…'} to settings.py "
            "(one dict holding every unipost_connect setting).",
        )
    return value


def _get(name: str) -> Any:
    # An absent UNIPOST_CONNECT reads as all defaults, so the first property that needs a
    # value (API_KEY) is the one that names what is missing.
    if getattr(django_settings, "UNIPOST_CONNECT", None) is None:
        return DEFAULTS[name]
    return _configured().get(name, DEFAULTS[name])


def _bool(name: str) -> bool:
    # No truthiness: bool("false") is True, and an env var read without env.bool()
    # would quietly switch the option on.
    value = _get(name)
    if not isinstance(value, bool):
        raise SettingError(
            name,
            f"must be True or False, not {_show(value)}",
            f"Give a bool (e.g. env.bool(...) for an environment variable); unset, it is {DEFAULTS[name]!r}.",
        )
    return value


def _name(name: str, what: str) -> str:
    value = _get(name)
    if not isinstance(value, str) or not value:
        raise SettingError(
            name,
            f"must be the name of {what}, not {_show(value)}",
            f"Give {what} as a str; unset, it is {DEFAULTS[name]!r}.",
        )
    return value


def _checked_number(name: str) -> float:
    # A string such as "10" (an env var read as text) is refused, not converted: the
    # site would otherwise run on a value its own settings file does not show.
    value = _get(name)
    least, whole = NUMBERS[name]
    kinds = (int,) if whole else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or math.isnan(value) or value < least:
        kind = "a whole number" if whole else "a number"
        raise SettingError(
            name,
            f"must be {kind} of at least {least:g}, not {_show(value)}",
            f"Leave it unset for the default ({DEFAULTS[name]!r}).",
        )
    result: float = value  # an int for a whole-number key, else an int or a float
    return result


def _number(name: str) -> float:
    return float(_checked_number(name))


def _whole(name: str) -> int:
    return int(_checked_number(name))


T = TypeVar("T")


class _Setting(Generic[T]):
    """A typed attribute that reads the key of its own name through ``read`` on every
    access: a property, for the keys whose reading is one of the shared ones above."""

    def __init__(self, read: Callable[[str], T]) -> None:
        self.read = read

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> _Setting[T]: ...
    @overload
    def __get__(self, instance: ConnectSettings, owner: type[Any]) -> T: ...
    def __get__(self, instance: ConnectSettings | None, owner: type[Any]) -> T | _Setting[T]:
        return self if instance is None else self.read(self.name)


class ConnectSettings:
    """Typed view of ``settings.UNIPOST_CONNECT`` with defaults filled in."""

    def configured(self) -> dict[str, Any]:
        """The ``UNIPOST_CONNECT`` dict as written.

        Raises :class:`SettingError` when the setting is absent or not a dict (check E001).
        """
        return _configured()

    def get(self, name: str) -> Any:
        """The value of ``name`` as written, or its default; unchecked."""
        return _get(name)

    ALLOW_QUICKSTART_CREDS = _Setting(_bool)
    SEND_USER_EMAIL = _Setting(_bool)
    CONNECT_TIMEOUT = _Setting(_number)
    READ_TIMEOUT = _Setting(_number)
    MAX_RETRIES = _Setting(_whole)
    RETRY_MAX_WAIT = _Setting(_number)
    REUSE_MIN_REMAINING = _Setting(_whole)
    WEBHOOK_MAX_BODY_BYTES = _Setting(_whole)

    @property
    def API_KEY(self) -> str:
        """The key without surrounding whitespace.

        An HTTP header value cannot begin or end with whitespace (RFC 9110, 5.5), so
        the key as sent is the stripped key either way; a key read from a file or an
        environment variable often ends with a newline. Check W005 reports it, so the
        setting can be cleaned rather than relied on.
        """
        key = self.get("API_KEY")
        if not isinstance(key, str):
            raise SettingError(
                "API_KEY",
                f"must be a string, not {type(key).__name__}",
                "Set it to your UniPost workspace API key (up_live_… or up_test_…), "
                "e.g. from an environment variable.",
            )
        if not key.strip():
            raise SettingError(
                "API_KEY",
                "is not set",
                "Add your UniPost workspace API key (up_live_… or up_test_…) to the "
                "UNIPOST_CONNECT dict in settings.py.",
            )
        return key.strip()

    @property
    def API_BASE_URL(self) -> str:
        """The URL without a trailing slash (paths are appended to it)."""
        value = self.get("API_BASE_URL")
        if not isinstance(value, str) or not is_http_url(value):
            raise SettingError(
                "API_BASE_URL",
                f"is not an http(s) URL: {_show(value)}",
                f"Leave it unset for {DEFAULT_BASE_URL}, or give the full URL.",
            )
        return value.rstrip("/")

    @property
    def WEBHOOK_SECRETS(self) -> list[str]:
        """All accepted signing secrets; a list lets a secret be rotated without downtime.

        Empty entries are no secret (an unset environment variable in a rotation list);
        whitespace around a secret is not used, like the API key's (check W005).
        """
        value = self.get("WEBHOOK_SECRET")
        entries = [] if value is None else [value] if isinstance(value, str) else value
        if not isinstance(entries, (list, tuple)) or not all(isinstance(e, str) for e in entries):
            wrong = type(value).__name__
            if isinstance(entries, (list, tuple)):
                wrong = f"a {wrong} holding " + ", ".join(
                    sorted({type(e).__name__ for e in entries if not isinstance(e, str)})
                )
            raise SettingError(
                "WEBHOOK_SECRET",
                f"must be a string or a list of strings, not {wrong}",
                "Give the whsec_… secret; use a list to accept an old and a new secret while rotating.",
            )
        return [e.strip() for e in entries if e.strip()]

    @property
    def PROFILE_ID(self) -> str | Callable[[Any, Any], str | None] | None:
        """The profile id, or the callable ``f(user, request)`` that chooses one; empty
        means none. A string with a dot is a dotted path (UniPost's ids are UUIDs)."""
        value = self.get("PROFILE_ID")
        if callable(value) or (isinstance(value, str) and "." in value):
            chooser: Callable[[Any, Any], str | None] = self._callable(
                "PROFILE_ID", "Give a function f(user, request) returning a profile id or None."
            )
            return chooser
        if value is not None and not isinstance(value, str):
            raise SettingError(
                "PROFILE_ID",
                f"must be a string, a callable, a dotted path to one, or None, not {type(value).__name__}",
                "Copy the profile id from UniPost's dashboard (a UUID), as a string, or give "
                "a function f(user, request) that picks one per tenant.",
            )
        return value or None

    def profile_id_for(self, user: Any, request: Any = None) -> str | None:
        """The profile ``user``'s sessions go to (``request`` is None outside a request)."""
        value = self.PROFILE_ID
        if not callable(value):
            return value
        chosen = value(user, request)
        if chosen is not None and not isinstance(chosen, str):
            raise SettingError(
                "PROFILE_ID",
                f"returned {type(chosen).__name__}, not a string or None",
                "Make the function return the tenant's profile id (a string) or None.",
            )
        return (chosen.strip() or None) if chosen else None

    @property
    def PLATFORMS(self) -> tuple[str, ...]:
        """The allowed platforms, in the order given (a set in the order of ALL_PLATFORMS).

        A platform listed twice is listed once.
        """
        value = self.get("PLATFORMS")
        choose = f"Choose from: {', '.join(platforms.ALL_PLATFORMS)}"
        if not isinstance(value, (list, tuple, set, frozenset)) or not value:
            raise SettingError(
                "PLATFORMS",
                f"must be a non-empty list of platform names, not {_show(value)}",
                f"{choose}, e.g. ['linkedin', 'bluesky']. Leave it unset for all of them.",
            )
        unknown = [p for p in value if p not in platforms.ALL_PLATFORMS]
        if unknown:
            # Say what was probably meant, but do not read it that way: "LinkedIn" in
            # settings is a typo to fix, not a second spelling to support.
            meant = [
                f"{platforms.normalize(p)!r} for {p!r}"
                for p in unknown
                if platforms.normalize(p) in platforms.ALL_PLATFORMS
            ]
            raise UnknownPlatformError(
                "PLATFORMS",
                f"has unknown platforms: {', '.join(sorted(_show(p) for p in unknown))}",
                (f"Write {', '.join(meant)}. " if meant else "") + f"{choose} (lowercase).",
            )
        if isinstance(value, (set, frozenset)):
            return tuple(p for p in platforms.ALL_PLATFORMS if p in value)
        return tuple(dict.fromkeys(value))

    @property
    def RETURN_BASE_URL(self) -> str | None:
        """The public origin without a trailing slash; empty means none."""
        value = self.get("RETURN_BASE_URL")
        if value is None or value == "":
            return None
        if not isinstance(value, str) or not is_http_url(value):
            raise SettingError(
                "RETURN_BASE_URL",
                f"is not an absolute http(s) URL: {_show(value)}",
                "Give the public origin of this site, e.g. 'https://www.example.com', or leave it unset.",
            )
        return value.rstrip("/")

    @property
    def EXTERNAL_USER_ID(self) -> Callable[[Any], str]:
        func: Callable[[Any], str] = self._callable(
            "EXTERNAL_USER_ID", "Give a function taking a user and returning a stable string id."
        )
        return func

    def owner_key(self, user: Any) -> str:
        """The owner ``user`` acts for at UniPost (``EXTERNAL_USER_ID``): every local user
        with the same key shares its accounts."""
        return str(self.EXTERNAL_USER_ID(user)).strip()

    @property
    def CAN_MANAGE_ACCOUNT(self) -> Callable[[Any, Any], bool]:
        func: Callable[[Any, Any], bool] = self._callable(
            "CAN_MANAGE_ACCOUNT", "Give a function f(user, account) returning True or False."
        )
        return func

    def _callable(self, name: str, hint: str) -> Any:
        """The setting ``name`` as a callable: given as one, or as a dotted path to one."""
        value = self.get(name)
        func = value
        if isinstance(value, str):
            try:
                func = import_string(value)
            except ImportError as exc:
                raise SettingError(name, f"cannot be imported: {_show(value)} ({exc})", hint) from exc
        if not callable(func):
            raise SettingError(name, f"must be a callable or a dotted path to one, not {_show(value)}", hint)
        return func

    @property
    def REDIRECT_URL(self) -> str:
        value = self.get("REDIRECT_URL")
        # reverse_lazy(...) is a Promise, resolved here at access time.
        if not isinstance(value, (str, Promise)):
            raise SettingError(
                "REDIRECT_URL",
                f"must be a str, not {type(value).__name__}",
                "Give a URL or a URL name, e.g. reverse_lazy('home'); "
                f"unset, it is {DEFAULTS['REDIRECT_URL']!r}.",
            )
        return str(value)

    @property
    def TASK_BACKEND(self) -> str:
        return _name("TASK_BACKEND", "an alias of settings.TASKS")

    @property
    def TASK_QUEUE(self) -> str:
        return _name("TASK_QUEUE", "a queue of that backend")

    @property
    def RETENTION_DAYS(self) -> int | None:
        """Days to keep processed webhook events and finished sessions; None: for ever.

        Not in ``NUMBERS``: None is a value here, not a missing one. Zero is refused rather
        than read as "delete everything finished", which is never what a typo meant.
        """
        value = self.get("RETENTION_DAYS")
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SettingError(
                "RETENTION_DAYS",
                f"must be a whole number of days of at least 1, or None, not {_show(value)}",
                f"Give e.g. {DEFAULTS['RETENTION_DAYS']!r} (the default), or None to keep everything.",
            )
        return value

    @property
    def TIMEOUT(self) -> tuple[float, float]:
        """``(CONNECT_TIMEOUT, READ_TIMEOUT)``, as requests takes them."""
        return (self.CONNECT_TIMEOUT, self.READ_TIMEOUT)


app_settings = ConnectSettings()
