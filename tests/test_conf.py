from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from django.urls import reverse, reverse_lazy

from unipost_connect.conf import (
    DEFAULTS,
    SettingError,
    UnknownPlatformError,
    app_settings,
    default_external_user_id,
)
from unipost_connect.platforms import ALL_PLATFORMS


def configured(**values: Any) -> override_settings:
    return override_settings(UNIPOST_CONNECT={"API_KEY": "up_test_x", **values})


def test_defaults():
    with override_settings(UNIPOST_CONNECT={"API_KEY": "up_test_x"}):
        assert app_settings.API_BASE_URL == "https://api.unipost.dev"
        assert app_settings.WEBHOOK_SECRETS == []
        assert app_settings.PROFILE_ID is None
        assert app_settings.ALLOW_QUICKSTART_CREDS is False
        assert app_settings.PLATFORMS == ALL_PLATFORMS
        assert len(ALL_PLATFORMS) == 9
        assert app_settings.RETURN_BASE_URL is None
        assert app_settings.EXTERNAL_USER_ID is default_external_user_id
        assert app_settings.SEND_USER_EMAIL is False
        assert app_settings.REDIRECT_URL == "/"
        assert app_settings.TIMEOUT == (3.05, 10.0)
        assert (app_settings.CONNECT_TIMEOUT, app_settings.READ_TIMEOUT) == (3.05, 10.0)
        assert app_settings.MAX_RETRIES == 2
        assert app_settings.RETRY_MAX_WAIT == 5.0
        assert app_settings.REUSE_MIN_REMAINING == 600
        assert app_settings.WEBHOOK_MAX_BODY_BYTES == 256 * 1024


def test_every_default_has_a_typed_property():
    with configured():
        for name in DEFAULTS:
            prop = "WEBHOOK_SECRETS" if name == "WEBHOOK_SECRET" else name
            if name in ("CONNECT_TIMEOUT", "READ_TIMEOUT"):
                prop = "TIMEOUT"
            getattr(app_settings, prop)


def test_values_are_read_at_access_time():
    assert app_settings.API_BASE_URL == "https://api.unipost.test"  # tests.settings
    with configured(API_BASE_URL="https://other.test/", PLATFORMS=["linkedin"], MAX_RETRIES=0):
        assert app_settings.API_BASE_URL == "https://other.test"
        assert app_settings.PLATFORMS == ("linkedin",)
        assert app_settings.MAX_RETRIES == 0
    assert app_settings.API_BASE_URL == "https://api.unipost.test"
    assert app_settings.PLATFORMS == ALL_PLATFORMS


def test_changes_through_the_settings_fixture_are_seen(settings):
    settings.UNIPOST_CONNECT = {**settings.UNIPOST_CONNECT, "PROFILE_ID": "pr_9"}
    assert app_settings.PROFILE_ID == "pr_9"


@pytest.mark.parametrize("config", [{}, {"API_KEY": ""}, {"API_KEY": "  \n"}, {"API_KEY": None}])
def test_missing_api_key_raises_naming_the_key(config):
    with override_settings(UNIPOST_CONNECT=config):
        with pytest.raises(ImproperlyConfigured, match=r"UNIPOST_CONNECT\['API_KEY'\]"):
            app_settings.API_KEY  # noqa: B018


def test_api_key_raises_when_the_whole_setting_is_missing_or_not_a_dict():
    with override_settings():
        del settings.UNIPOST_CONNECT
        with pytest.raises(ImproperlyConfigured, match="API_KEY"):
            app_settings.API_KEY  # noqa: B018
        assert app_settings.API_BASE_URL == "https://api.unipost.dev"
    with override_settings(UNIPOST_CONNECT="up_live_x"):
        with pytest.raises(ImproperlyConfigured, match="API_KEY"):
            app_settings.API_KEY  # noqa: B018


def test_api_key_is_stripped():
    with configured(API_KEY="up_live_abc\n"):
        assert app_settings.API_KEY == "up_live_abc"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("whsec_a", ["whsec_a"]),
        (["whsec_new", "whsec_old"], ["whsec_new", "whsec_old"]),
        (("whsec_new", "whsec_old"), ["whsec_new", "whsec_old"]),
        (["whsec_a", "", "  "], ["whsec_a"]),
        (" whsec_a\n", ["whsec_a"]),
        ("", []),
        (None, []),
        ([], []),
    ],
)
def test_webhook_secret_as_str_or_list(value, expected):
    with configured(WEBHOOK_SECRET=value):
        assert app_settings.WEBHOOK_SECRETS == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (["linkedin", "bluesky"], ("linkedin", "bluesky")),
        (("bluesky", "linkedin"), ("bluesky", "linkedin")),
        (["linkedin", "linkedin"], ("linkedin",)),
        # A set has no order of its own: the canonical one, the same in every process.
        ({"threads", "twitter", "bluesky"}, ("twitter", "bluesky", "threads")),
    ],
)
def test_platforms_as_given(value, expected):
    with configured(PLATFORMS=value):
        assert app_settings.PLATFORMS == expected


def test_other_values():
    with configured(
        PROFILE_ID="pr_1",
        ALLOW_QUICKSTART_CREDS=True,
        RETURN_BASE_URL="https://www.example.com/",
        EXTERNAL_USER_ID="unipost_connect.conf.default_external_user_id",
        SEND_USER_EMAIL=True,
        REDIRECT_URL=reverse_lazy("done"),
        CONNECT_TIMEOUT=1,
        READ_TIMEOUT=2,
        MAX_RETRIES=3,
        RETRY_MAX_WAIT=1,
        REUSE_MIN_REMAINING=60,
        WEBHOOK_MAX_BODY_BYTES=1024,
    ):
        assert app_settings.PROFILE_ID == "pr_1"
        assert app_settings.ALLOW_QUICKSTART_CREDS is True
        assert app_settings.RETURN_BASE_URL == "https://www.example.com"
        assert app_settings.EXTERNAL_USER_ID is default_external_user_id
        assert app_settings.SEND_USER_EMAIL is True
        assert app_settings.REDIRECT_URL == "/done/"
        assert app_settings.TIMEOUT == (1.0, 2.0)
        assert app_settings.MAX_RETRIES == 3
        assert app_settings.RETRY_MAX_WAIT == 1.0
        assert app_settings.REUSE_MIN_REMAINING == 60
        assert app_settings.WEBHOOK_MAX_BODY_BYTES == 1024
    with configured(PROFILE_ID="", EXTERNAL_USER_ID=str):
        assert app_settings.PROFILE_ID is None
        assert app_settings.EXTERNAL_USER_ID is str


def test_default_external_user_id_is_the_primary_key():
    class User:
        pk = 42

    assert default_external_user_id(User()) == "42"


def test_unknown_names_are_attribute_errors():
    with pytest.raises(AttributeError):
        app_settings.NOT_A_SETTING  # noqa: B018


# -- values the app cannot use: refused at use, never repaired ------------------------

# (key, a value of it the app cannot use, the property that reads it)
UNUSABLE: list[tuple[str, Any, str]] = [
    ("API_KEY", 12345, "API_KEY"),
    ("TASK_BACKEND", "", "TASK_BACKEND"),
    ("TASK_BACKEND", 3, "TASK_BACKEND"),
    ("TASK_QUEUE", None, "TASK_QUEUE"),
    ("API_BASE_URL", "api.unipost.dev", "API_BASE_URL"),
    ("API_BASE_URL", 5, "API_BASE_URL"),
    ("WEBHOOK_SECRET", 123, "WEBHOOK_SECRETS"),
    ("WEBHOOK_SECRET", ["whsec_a", 5], "WEBHOOK_SECRETS"),
    ("WEBHOOK_SECRET", {"whsec_a"}, "WEBHOOK_SECRETS"),
    ("PROFILE_ID", 7, "PROFILE_ID"),
    ("PROFILE_ID", "tenants.no_such_module.profile_for", "PROFILE_ID"),
    ("CAN_MANAGE_ACCOUNT", "no.such.module.func", "CAN_MANAGE_ACCOUNT"),
    ("CAN_MANAGE_ACCOUNT", True, "CAN_MANAGE_ACCOUNT"),
    ("ALLOW_QUICKSTART_CREDS", "false", "ALLOW_QUICKSTART_CREDS"),
    ("PLATFORMS", "linkedin, bluesky", "PLATFORMS"),
    ("PLATFORMS", None, "PLATFORMS"),
    ("PLATFORMS", [], "PLATFORMS"),
    ("PLATFORMS", ["LinkedIn "], "PLATFORMS"),
    ("RETURN_BASE_URL", "www.example.com", "RETURN_BASE_URL"),
    ("EXTERNAL_USER_ID", "no.such.module.func", "EXTERNAL_USER_ID"),
    ("EXTERNAL_USER_ID", "unipost_connect.conf.DEFAULTS", "EXTERNAL_USER_ID"),
    ("SEND_USER_EMAIL", 1, "SEND_USER_EMAIL"),
    ("REDIRECT_URL", None, "REDIRECT_URL"),
    ("CONNECT_TIMEOUT", 0, "TIMEOUT"),
    ("READ_TIMEOUT", "10", "TIMEOUT"),
    ("READ_TIMEOUT", float("nan"), "READ_TIMEOUT"),
    ("MAX_RETRIES", "3", "MAX_RETRIES"),
    ("MAX_RETRIES", True, "MAX_RETRIES"),
    ("MAX_RETRIES", 1.5, "MAX_RETRIES"),
    ("RETRY_MAX_WAIT", -0.5, "RETRY_MAX_WAIT"),
    ("REUSE_MIN_REMAINING", None, "REUSE_MIN_REMAINING"),
    ("WEBHOOK_MAX_BODY_BYTES", 0, "WEBHOOK_MAX_BODY_BYTES"),
    ("RETENTION_DAYS", 0, "RETENTION_DAYS"),
]


@pytest.mark.parametrize(("key", "value", "prop"), UNUSABLE)
def test_an_unusable_value_raises_naming_the_key_and_the_fix(key, value, prop):
    with configured(**{key: value}):
        with pytest.raises(ImproperlyConfigured) as caught:
            getattr(app_settings, prop)
    error = caught.value
    assert isinstance(error, SettingError)
    assert error.key == key
    assert str(error).startswith(f"UNIPOST_CONNECT['{key}'] ")
    assert error.fix and error.fix in str(error)


def test_every_key_has_an_unusable_value_tested():
    assert {key for key, _, _ in UNUSABLE} == set(DEFAULTS)


def test_strings_are_not_read_as_numbers_or_bools():
    # bool("false") is True and float("10") is 10.0: a value read from the environment
    # without a cast must be refused, not quietly turned into something else.
    with configured(ALLOW_QUICKSTART_CREDS="false"):
        with pytest.raises(SettingError, match=r"must be True or False, not 'false'"):
            app_settings.ALLOW_QUICKSTART_CREDS  # noqa: B018
    with configured(READ_TIMEOUT="10"):
        with pytest.raises(SettingError, match=r"must be a number of at least 0.001, not '10'"):
            app_settings.TIMEOUT  # noqa: B018


def test_whole_numbers_given_for_float_settings_are_fine():
    with configured(CONNECT_TIMEOUT=1, RETRY_MAX_WAIT=0):
        assert app_settings.TIMEOUT == (1.0, 10.0)
        assert app_settings.RETRY_MAX_WAIT == 0.0


@pytest.mark.parametrize(
    ("value", "fix"),
    [
        (["LinkedIn"], "Write 'linkedin' for 'LinkedIn'."),
        (["linkedin", " bluesky", "myspace"], "Write 'bluesky' for ' bluesky'."),
        (["myspace"], "Choose from: twitter,"),
    ],
)
def test_a_misspelt_platform_is_refused_with_the_spelling_to_use(value, fix):
    with configured(PLATFORMS=value):
        with pytest.raises(UnknownPlatformError) as caught:
            app_settings.PLATFORMS  # noqa: B018
    assert caught.value.fix.startswith(fix)
    assert "myspace" not in caught.value.fix


def test_a_platforms_string_is_not_split():
    with configured(PLATFORMS="linkedin"):
        with pytest.raises(SettingError, match=r"must be a non-empty list of platform names, not 'linkedin'"):
            app_settings.PLATFORMS  # noqa: B018


def test_a_setting_that_is_not_a_dict_fails_every_read():
    with override_settings(UNIPOST_CONNECT=["API_KEY"]):
        with pytest.raises(SettingError, match=r"^settings\.UNIPOST_CONNECT must be a dict, not list\."):
            app_settings.API_BASE_URL  # noqa: B018
        with pytest.raises(SettingError, match=r"UNIPOST_CONNECT = \{'API_KEY'"):
            app_settings.PLATFORMS  # noqa: B018


@pytest.mark.parametrize("value", [123, ["whsec_secret_value", 5], {"whsec_secret_value"}])
def test_a_wrong_webhook_secret_is_refused_without_quoting_it(value):
    # Accepting no signature at all (the old reading) refused every delivery with 403 and
    # said nothing; now the webhook answers 500, UniPost retries, and the log says why.
    with configured(WEBHOOK_SECRET=value):
        with pytest.raises(SettingError) as caught:
            app_settings.WEBHOOK_SECRETS  # noqa: B018
    assert "secret_value" not in str(caught.value)
    assert "must be a string or a list of strings" in str(caught.value)


def test_an_api_key_of_the_wrong_type_is_not_quoted():
    with configured(API_KEY=123456789):
        with pytest.raises(SettingError, match=r"must be a string, not int") as caught:
            app_settings.API_KEY  # noqa: B018
    assert "123456789" not in str(caught.value)


def test_a_dotted_path_that_does_not_import_is_an_improperly_configured():
    # Not the ImportError import_string raises, which names no setting.
    with configured(EXTERNAL_USER_ID="no.such.module.func"):
        with pytest.raises(
            SettingError, match=r"EXTERNAL_USER_ID'\] cannot be imported: 'no.such.module.func'"
        ):
            app_settings.EXTERNAL_USER_ID  # noqa: B018


@pytest.mark.django_db
def test_a_wrong_webhook_secret_fails_the_delivery_clearly(client):
    # At use, not only in the check: the delivery answers 500 with the setting's error
    # (logged with its traceback), where the old reading answered 403, like a bad signature.
    client.raise_request_exception = False
    with configured(WEBHOOK_SECRET=123):
        answer = client.post(reverse("unipost_connect:webhook"), b"{}", content_type="application/json")
    assert answer.status_code == 500
    client.raise_request_exception = True
    with configured(WEBHOOK_SECRET=123):
        with pytest.raises(SettingError, match=r"UNIPOST_CONNECT\['WEBHOOK_SECRET'\]"):
            client.post(reverse("unipost_connect:webhook"), b"{}", content_type="application/json")
