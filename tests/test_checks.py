from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.checks import Error, Tags, Warning, run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings
from django.urls import reverse_lazy

from unipost_connect import checks

GOOD: dict[str, Any] = {
    "API_KEY": "up_live_abc123",
    "API_BASE_URL": "https://api.unipost.dev",
    "WEBHOOK_SECRET": "whsec_abc",
}


# Only our tag: Django 6.1's model checks ask the database about JSONField support.
def ids(value: Any = ..., **changes: Any) -> list[str]:
    """The unipost_connect check ids for UNIPOST_CONNECT = GOOD + changes (or ``value``)."""
    config = {**GOOD, **changes} if value is ... else value
    with override_settings(UNIPOST_CONNECT=config):
        return [
            m.id for m in run_checks(tags=[Tags.compatibility]) if (m.id or "").startswith("unipost_connect.")
        ]


def without(*names: str) -> dict[str, Any]:
    return {k: v for k, v in GOOD.items() if k not in names}


def test_a_good_configuration_passes():
    assert ids() == []
    assert ids(settings.UNIPOST_CONNECT) == []  # the suite's own settings


def test_full_configuration_with_every_key_passes():
    assert (
        ids(
            PROFILE_ID="pr_1",
            ALLOW_QUICKSTART_CREDS=True,
            PLATFORMS=["linkedin", "bluesky"],
            RETURN_BASE_URL="https://www.example.com",
            EXTERNAL_USER_ID=lambda user: str(user.pk),
            SEND_USER_EMAIL=True,
            REDIRECT_URL=reverse_lazy("done"),
            CONNECT_TIMEOUT=1,
            READ_TIMEOUT=2.5,
            MAX_RETRIES=0,
            RETRY_MAX_WAIT=0,
            REUSE_MIN_REMAINING=0,
            WEBHOOK_MAX_BODY_BYTES=1024,
            WEBHOOK_SECRET=["whsec_new", "whsec_old"],
        )
        == []
    )


# E001: the dict itself


@pytest.mark.parametrize("value", [None, "up_live_x", ["API_KEY"]])
def test_e001_missing_or_not_a_dict(value):
    assert ids(value) == ["unipost_connect.E001"]


def test_e001_when_the_setting_is_absent():
    with override_settings():
        del settings.UNIPOST_CONNECT
        assert [
            m.id for m in run_checks(tags=[Tags.compatibility]) if m.id.startswith("unipost_connect.")
        ] == ["unipost_connect.E001"]


# E002 / W002: the API key


@pytest.mark.parametrize("value", ["", "   ", None, 12345])
def test_e002_api_key_missing(value):
    assert ids(API_KEY=value) == ["unipost_connect.E002"]


def test_e002_api_key_absent():
    assert ids(without("API_KEY")) == ["unipost_connect.E002"]


@pytest.mark.parametrize("value", ["up_test_abc", "up_live_abc"])
def test_e002_w002_good_keys(value):
    assert ids(API_KEY=value) == []


@pytest.mark.parametrize("value", ["sk_live_abc", "whsec_abc", "up_live_ab c"])
def test_w002_key_does_not_look_like_a_unipost_key(value):
    assert ids(API_KEY=value) == ["unipost_connect.W002"]


def test_w002_never_shows_the_key():
    with override_settings(UNIPOST_CONNECT={**GOOD, "API_KEY": "sk_secret_value"}):
        messages = [m for m in run_checks(tags=[Tags.compatibility]) if m.id == "unipost_connect.W002"]
    assert messages and all("sk_secret_value" not in f"{m.msg} {m.hint}" for m in messages)


# E003: API base URL


@pytest.mark.parametrize("value", ["api.unipost.dev", "ftp://api.unipost.dev", "https://", "", 5])
def test_e003_base_url_not_http(value):
    assert ids(API_BASE_URL=value) == ["unipost_connect.E003"]


@pytest.mark.parametrize("value", ["http://127.0.0.1:8001", "https://api.unipost.dev/"])
def test_e003_good_base_urls(value):
    assert ids(API_BASE_URL=value) == []
    assert ids(without("API_BASE_URL")) == []  # the default


# E004 / E005: platforms


@pytest.mark.parametrize("value", ["linkedin", {"linkedin": True}, None, [], 3])
def test_e004_platforms_not_a_list(value):
    assert ids(PLATFORMS=value) == ["unipost_connect.E004"]


@pytest.mark.parametrize("value", [["linkedin", "myspace"], ["LinkedIn"], [1]])
def test_e005_unknown_platform(value):
    assert ids(PLATFORMS=value) == ["unipost_connect.E005"]


@pytest.mark.parametrize("value", [["linkedin"], ("twitter", "bluesky"), {"threads"}])
def test_e004_e005_good_platforms(value):
    assert ids(PLATFORMS=value) == []


# E006 / W001: webhook secret


@pytest.mark.parametrize("value", [123, {"whsec_a"}, ["whsec_a", 5], [None]])
def test_e006_webhook_secret_wrong_type(value):
    assert ids(WEBHOOK_SECRET=value) == ["unipost_connect.E006"]


@pytest.mark.parametrize("value", ["", "  ", [], [""], None])
def test_w001_webhook_secret_empty(value):
    assert ids(WEBHOOK_SECRET=value) == ["unipost_connect.W001"]


def test_w001_webhook_secret_absent():
    assert ids(without("WEBHOOK_SECRET")) == ["unipost_connect.W001"]


@pytest.mark.parametrize("value", ["whsec_a", ["whsec_a"], ("whsec_new", "whsec_old"), ["whsec_a", ""]])
def test_e006_w001_good_secrets(value):
    assert ids(WEBHOOK_SECRET=value) == []


# E007: return base URL


@pytest.mark.parametrize("value", ["www.example.com", "/unipost", "javascript:alert(1)", 1])
def test_e007_return_base_url(value):
    assert ids(RETURN_BASE_URL=value) == ["unipost_connect.E007"]


@pytest.mark.parametrize("value", [None, "", "https://www.example.com", "http://localhost:8000/app"])
def test_e007_good_return_base_urls(value):
    assert ids(RETURN_BASE_URL=value) == []


# E008: external user id


@pytest.mark.parametrize(
    "value",
    [
        "no.such.module.func",
        "nodots",
        "unipost_connect.conf.nothing_here",
        42,
        "unipost_connect.conf.ALL_PLATFORMS",
        "unipost_connect.conf.DEFAULTS",  # importable, not callable
    ],
)
def test_e008_external_user_id(value):
    assert ids(EXTERNAL_USER_ID=value) == ["unipost_connect.E008"]


@pytest.mark.parametrize("value", ["unipost_connect.conf.default_external_user_id", str])
def test_e008_good_external_user_id(value):
    assert ids(EXTERNAL_USER_ID=value) == []


# E009 / E010: the other keys' types


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CONNECT_TIMEOUT", 0),
        ("READ_TIMEOUT", "10"),
        ("MAX_RETRIES", -1),
        ("MAX_RETRIES", 1.5),
        ("MAX_RETRIES", True),
        ("RETRY_MAX_WAIT", -0.5),
        ("REUSE_MIN_REMAINING", None),
        ("WEBHOOK_MAX_BODY_BYTES", 0),
        ("READ_TIMEOUT", float("nan")),
    ],
)
def test_e009_numbers(name, value):
    assert ids(**{name: value}) == ["unipost_connect.E009"]


@pytest.mark.parametrize(
    ("name", "value"),
    [("PROFILE_ID", 7), ("ALLOW_QUICKSTART_CREDS", "false"), ("SEND_USER_EMAIL", 1), ("REDIRECT_URL", None)],
)
def test_e010_types(name, value):
    assert ids(**{name: value}) == ["unipost_connect.E010"]


# W003: unknown keys


def test_w003_unknown_keys():
    assert ids(APIKEY="up_live_x", WEBHOOK_SECRETS=["x"]) == ["unipost_connect.W003"]
    with override_settings(UNIPOST_CONNECT={**GOOD, "APIKEY": "x"}):
        (message,) = [m for m in run_checks(tags=[Tags.compatibility]) if m.id == "unipost_connect.W003"]
    assert "APIKEY" in message.msg


# W004: an isolation level other than READ COMMITTED


def isolation_warnings(level: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    from django.conf import settings

    database = {**settings.DATABASES["default"], "ENGINE": "django.db.backends.postgresql"}
    database["OPTIONS"] = {"isolation_level": level}
    # Set directly rather than with override_settings: only the check reads it, and no
    # connection is opened with it.
    monkeypatch.setattr(settings, "DATABASES", {"default": database})
    return [m.id for m in checks.check_isolation_level() if m.id]


@pytest.mark.parametrize("level", ["REPEATABLE_READ", "SERIALIZABLE"])
def test_w004_an_isolation_level_stricter_than_read_committed(level, monkeypatch):
    import psycopg

    assert isolation_warnings(psycopg.IsolationLevel[level], monkeypatch) == ["unipost_connect.W004"]


@pytest.mark.parametrize("level", ["READ_COMMITTED", None])
def test_w004_not_for_read_committed(level, monkeypatch):
    import psycopg

    assert isolation_warnings(level and psycopg.IsolationLevel[level], monkeypatch) == []


# -- the set of checks --------------------------------------------------------------


# E014: who may manage an account


@pytest.mark.parametrize("value", ["no.such.module.func", "unipost_connect.conf.DEFAULTS", 0])
def test_e014_can_manage_account(value):
    assert ids(CAN_MANAGE_ACCOUNT=value) == ["unipost_connect.E014"]


@pytest.mark.parametrize(
    "value", ["unipost_connect.conf.default_can_manage_account", lambda user, account: True]
)
def test_e014_good_can_manage_account(value):
    assert ids(CAN_MANAGE_ACCOUNT=value) == []


def test_e010_a_profile_id_function_is_read_and_a_dotted_path_that_does_not_import_is_refused():
    assert ids(PROFILE_ID=lambda user, request: "pr_tenant") == []
    assert ids(PROFILE_ID="tests.helpers.no_such_function") == ["unipost_connect.E010"]


def _declared_ids() -> list[str]:
    source = Path(checks.__file__).read_text()
    return re.findall(r'id="(unipost_connect\.[EW]\d{3})"', source)


def test_ids_are_unique_per_problem_and_all_tested():
    declared = _declared_ids()
    assert sorted(set(declared)) == [
        *(f"unipost_connect.E{n:03d}" for n in range(1, 15)),
        *(f"unipost_connect.W{n:03d}" for n in range(1, 6)),
    ]
    # E008 (not importable / not callable) is one problem; conf raises both, so it may be
    # declared once. No other id is declared twice.
    assert {i for i in declared if declared.count(i) > 1} <= {"unipost_connect.E008"}
    tested = set(re.findall(r"test_([ew]\d{3})", Path(__file__).read_text()))
    assert {i.rsplit(".", 1)[1].lower() for i in declared} <= tested


def test_levels_match_the_ids():
    broken = {**GOOD, "API_KEY": "", "WEBHOOK_SECRET": "", "PLATFORMS": "x", "NOPE": 1}
    with override_settings(UNIPOST_CONNECT=broken):
        messages = [m for m in run_checks(tags=[Tags.compatibility]) if m.id.startswith("unipost_connect.")]
    for message in messages:
        assert isinstance(message, Error if ".E" in message.id else Warning)
        assert message.hint


@pytest.mark.django_db  # the full check also runs Django's model checks, which ask the database
def test_check_command_fails_on_errors():
    with override_settings(UNIPOST_CONNECT=without("API_KEY")):
        with pytest.raises(SystemCheckError, match=r"unipost_connect\.E002"):
            call_command("check")
    call_command("check")  # the suite's own settings are fine


def test_manage_py_check_in_a_fresh_process(tmp_path):
    """The checks run from ``manage.py check`` with the app installed normally."""
    settings_module = tmp_path / "bad_settings.py"
    settings_module.write_text(
        "from tests.settings import *\nUNIPOST_CONNECT = {'API_KEY': 'up_live_x', 'PLATFORMS': ['myspace']}\n"
    )
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, "-m", "django", "check"],
        cwd=root,
        env={
            "PYTHONPATH": f"{tmp_path}:{root}",
            "DJANGO_SETTINGS_MODULE": "bad_settings",
            "PATH": "/usr/bin",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "unipost_connect.E005" in result.stderr
    assert "unipost_connect.W001" in result.stderr


# E011: a key no HTTP header can carry


@pytest.mark.parametrize("key", ["up_live_abc\u200bdef", "up_live_é", "up_live_abc\x07"])
def test_e011_a_key_no_header_can_carry(key):
    assert ids(API_KEY=key) == ["unipost_connect.E011"]


def test_e011_not_for_a_plain_key():
    assert "unipost_connect.E011" not in ids(API_KEY="up_test_plain_ascii_key")


# E012: a PROFILE_ID that cannot be stored


@pytest.mark.parametrize("profile_id", ["p" * 129, "pr_\x00"])
def test_e012_a_profile_id_that_cannot_be_stored(profile_id):
    assert ids(PROFILE_ID=profile_id) == ["unipost_connect.E012"]


def test_e012_not_for_a_uuid():
    assert "unipost_connect.E012" not in ids(PROFILE_ID="b1e7d3c9-5a2f-4c8e-8d6b-0f4a2c9e7b15")


# W005: whitespace around a secret (not used; reported so the setting can be cleaned)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("API_KEY", "up_live_abc\n"),
        ("API_KEY", "  up_live_abc"),
        ("WEBHOOK_SECRET", " whsec_a\n"),
        ("WEBHOOK_SECRET", ["whsec_new", "whsec_old\n"]),
    ],
)
def test_w005_whitespace_around_a_secret(name, value):
    assert ids(**{name: value}) == ["unipost_connect.W005"]


@pytest.mark.parametrize(
    ("name", "value"),
    [("API_KEY", "up_live_abc"), ("WEBHOOK_SECRET", ["whsec_a", ""]), ("WEBHOOK_SECRET", ("whsec_a", "  "))],
)
def test_w005_not_for_clean_secrets_or_empty_entries(name, value):
    assert ids(**{name: value}) == []


def test_w005_never_shows_the_secret():
    config = {**GOOD, "API_KEY": "up_live_topsecret\n", "WEBHOOK_SECRET": "whsec_hidden "}
    with override_settings(UNIPOST_CONNECT=config):
        messages = [m for m in run_checks(tags=[Tags.compatibility]) if m.id == "unipost_connect.W005"]
    assert len(messages) == 2
    assert {m.msg.split("'")[1] for m in messages} == {"API_KEY", "WEBHOOK_SECRET"}
    shown = " ".join(f"{m.msg} {m.hint}" for m in messages)
    assert "topsecret" not in shown and "hidden" not in shown


# -- the checks read through conf ---------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "prop"),
    [
        ({"API_KEY": None}, "API_KEY"),
        ({"API_BASE_URL": "ftp://x"}, "API_BASE_URL"),
        ({"PLATFORMS": "linkedin"}, "PLATFORMS"),
        ({"PLATFORMS": ["LinkedIn"]}, "PLATFORMS"),
        ({"WEBHOOK_SECRET": 5}, "WEBHOOK_SECRETS"),
        ({"RETURN_BASE_URL": "/x"}, "RETURN_BASE_URL"),
        ({"EXTERNAL_USER_ID": 42}, "EXTERNAL_USER_ID"),
        ({"MAX_RETRIES": "2"}, "MAX_RETRIES"),
        ({"SEND_USER_EMAIL": "yes"}, "SEND_USER_EMAIL"),
    ],
)
def test_a_check_reports_the_error_the_app_raises_at_use(changes, prop):
    from unipost_connect.conf import SettingError, app_settings

    with override_settings(UNIPOST_CONNECT={**GOOD, **changes}):
        (message,) = [
            m for m in run_checks(tags=[Tags.compatibility]) if m.id.startswith("unipost_connect.E")
        ]
        with pytest.raises(SettingError) as caught:
            getattr(app_settings, prop)
    assert message.msg == caught.value.problem
    assert message.hint.startswith(caught.value.fix)


def test_e001_reports_a_setting_that_is_not_a_dict_by_its_type():
    with override_settings(UNIPOST_CONNECT=["API_KEY"]):
        (message,) = [m for m in run_checks(tags=[Tags.compatibility]) if m.id.startswith("unipost_connect.")]
    assert message.msg == "settings.UNIPOST_CONNECT must be a dict, not list."


def test_e005_suggests_the_spelling_without_reading_it_that_way():
    with override_settings(UNIPOST_CONNECT={**GOOD, "PLATFORMS": ["LinkedIn"]}):
        (message,) = [m for m in run_checks(tags=[Tags.compatibility]) if m.id == "unipost_connect.E005"]
    assert message.hint.startswith("Write 'linkedin' for 'LinkedIn'.")


def test_the_checks_are_registered_by_the_app_config():
    from django.core.checks.registry import registry

    registered = registry.get_checks()
    for check in (checks.check_settings, checks.check_isolation_level):
        assert check in registered
        assert list(check.tags) == [Tags.compatibility]


# E013: the task backend or queue


def test_e013_a_task_backend_tasks_does_not_define():
    assert ids(TASK_BACKEND="workers") == ["unipost_connect.E013"]


def test_e013_a_task_queue_that_is_not_a_name():
    assert ids(TASK_QUEUE=5) == ["unipost_connect.E013"]


def test_e013_not_for_the_default_backend():
    assert "unipost_connect.E013" not in ids(TASK_BACKEND="default")
