from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from django.urls import reverse_lazy

from unipost_connect.conf import DEFAULTS, app_settings, default_external_user_id
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
        (123, []),  # refused by check E006; never a secret anyone could guess
    ],
)
def test_webhook_secret_as_str_or_list(value, expected):
    with configured(WEBHOOK_SECRET=value):
        assert app_settings.WEBHOOK_SECRETS == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (["linkedin", "bluesky"], ("linkedin", "bluesky")),
        (["LinkedIn ", "linkedin"], ("linkedin",)),
        ("linkedin, bluesky", ("linkedin", "bluesky")),
        ("linkedin", ("linkedin",)),
        (None, ()),
    ],
)
def test_platforms_normalised(value, expected):
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
        MAX_RETRIES="3",
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
