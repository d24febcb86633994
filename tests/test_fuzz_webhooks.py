"""Hypothesis properties of the webhook verifier and parser, and of the view behind them.

A few hundred examples per property by default; several thousand with
``HYPOTHESIS_PROFILE=thorough .venv/bin/pytest tests/test_fuzz_webhooks.py``.
"""

from __future__ import annotations

import json
import os
from datetime import UTC
from typing import Any

import pytest
from django.test import Client
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.helpers import start
from unipost_connect.models import ConnectSession, WebhookEvent
from unipost_connect.webhooks import (
    SIGNATURE_PREFIX,
    WebhookError,
    WebhookPayloadError,
    WebhookSignatureError,
    compute_signature,
    parse_payload,
    verify_signature,
)

settings.register_profile("webhooks-default", max_examples=300, deadline=None, database=None)
settings.register_profile("thorough", max_examples=5000, deadline=None, database=None)
PROFILE = "thorough" if os.environ.get("HYPOTHESIS_PROFILE") == "thorough" else "webhooks-default"
FUZZ = settings(settings.get_profile(PROFILE))
# The view property goes through the database; it gets a third of the examples.
VIEW_FUZZ = settings(
    FUZZ,
    max_examples=FUZZ.max_examples // 3,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

secrets_ = st.text(min_size=1, max_size=64)
headers = st.one_of(
    st.none(),
    st.text(max_size=120),
    st.builds(lambda h: SIGNATURE_PREFIX + h, st.text(alphabet="0123456789abcdefABCDEF", max_size=70)),
)


@FUZZ
@given(body=st.binary(max_size=2048), header=headers, secret_list=st.lists(st.text(max_size=40), max_size=3))
def test_verify_either_passes_or_raises_a_signature_error(
    body: bytes, header: str | None, secret_list: list[str]
) -> None:
    try:
        verify_signature(body, header, secret_list)
    except WebhookSignatureError:
        return
    # It passed: then the header must really be one of the secrets' signatures.
    assert header is not None
    assert header.strip() in {compute_signature(body, s) for s in secret_list if s}


@FUZZ
@given(body=st.binary(max_size=4096))
def test_parse_either_returns_an_event_or_raises_a_payload_error(body: bytes) -> None:
    try:
        payload = parse_payload(body)
    except WebhookPayloadError:
        return
    assert isinstance(payload, dict)
    assert isinstance(payload["event"], str) and payload["event"]
    assert isinstance(payload.get("data", {}), dict)


USER = "@user"  # replaced by the started session's external_user_id in the view property

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


def either(good: st.SearchStrategy[Any], chaos: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly well-formed values (to reach the deep paths), sometimes anything at all."""
    return st.one_of(good, good, good, chaos)


def clean_text(max_size: int) -> st.SearchStrategy[str]:
    """Text a real UniPost payload could hold (NULs are refused before anything else)."""
    return st.text(st.characters(exclude_characters="\x00"), max_size=max_size)


event_names = either(
    st.sampled_from(["account.connected", "account.connected", "account.disconnected", "post.published"]),
    st.text(max_size=80) | json_values,
)
data_objects = st.fixed_dictionaries(
    {
        "social_account_id": either(st.sampled_from(["sa_1", "sa_2", "sa_3"]), clean_text(200) | json_values),
        "platform": either(
            st.sampled_from(["linkedin", "bluesky", " LinkedIn "]), clean_text(50) | json_values
        ),
        "external_user_id": either(
            st.sampled_from([USER, " " + USER + " ", "ghost"]), clean_text(300) | json_values
        ),
    },
    optional={
        "account_name": either(clean_text(40), clean_text(300) | json_values),
        "profile_id": either(st.just("pr_default"), clean_text(200) | json_values),
        "connection_type": either(
            st.just("managed"), st.sampled_from(["dashboard", "MANAGED"]) | json_values
        ),
    },
)
event_ids = either(st.sampled_from(["evt_1", "evt_2"]) | st.uuids().map(str), clean_text(200) | json_values)
timestamps = either(
    st.datetimes(timezones=st.just(UTC)).map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")),
    clean_text(40) | json_values,
)
payloads = either(
    st.fixed_dictionaries(
        {"event": event_names, "data": data_objects},
        optional={"event_id": event_ids, "timestamp": timestamps},
    ),
    st.fixed_dictionaries(
        {"event": event_names},
        optional={"event_id": event_ids, "timestamp": timestamps, "data": json_values, "extra": json_values},
    ),
)


def _encode(payload: Any) -> bytes:
    # allow_nan: bodies with NaN/Infinity are what a broken sender could produce.
    return json.dumps(payload, allow_nan=True).encode()


@FUZZ
@given(payload=payloads)
def test_parse_of_json_shapes_returns_or_raises_a_payload_error(payload: Any) -> None:
    try:
        parsed = parse_payload(_encode(payload))
    except WebhookPayloadError:
        return
    assert parsed["event"] == payload["event"]


@FUZZ
@given(
    body=st.binary(max_size=4096),
    secret=secrets_,
    others=st.lists(secrets_, max_size=3),
    where=st.integers(0, 3),
)
def test_a_valid_signature_over_any_body_verifies(
    body: bytes, secret: str, others: list[str], where: int
) -> None:
    header = compute_signature(body, secret)
    assert header.startswith("sha256=") and len(header) == 7 + 64
    verify_signature(body, header, [secret])
    verify_signature(body, "  " + header + "\n", [secret])  # surrounding whitespace is not a change
    rotated = list(others)
    rotated.insert(min(where, len(rotated)), secret)
    verify_signature(body, header, rotated)


@FUZZ
@given(body=st.binary(min_size=1, max_size=4096), secret=secrets_, data=st.data())
def test_changing_any_one_byte_of_the_body_fails(body: bytes, secret: str, data: st.DataObject) -> None:
    header = compute_signature(body, secret)
    i = data.draw(st.integers(0, len(body) - 1), label="index")
    flip = data.draw(st.integers(1, 255), label="xor")
    changed = body[:i] + bytes([body[i] ^ flip]) + body[i + 1 :]
    with pytest.raises(WebhookSignatureError):
        verify_signature(changed, header, [secret])


@FUZZ
@given(body=st.binary(max_size=1024), secret=secrets_, data=st.data())
def test_changing_any_one_byte_of_the_signature_fails(body: bytes, secret: str, data: st.DataObject) -> None:
    header = compute_signature(body, secret).encode("latin-1")
    i = data.draw(st.integers(0, len(header) - 1), label="index")
    flip = data.draw(st.integers(1, 255), label="xor")
    changed = (header[:i] + bytes([header[i] ^ flip]) + header[i + 1 :]).decode("latin-1")
    with pytest.raises(WebhookSignatureError):
        verify_signature(body, changed, [secret])


@FUZZ
@given(body=st.binary(max_size=512), pair=st.lists(secrets_, min_size=2, max_size=2, unique=True))
def test_another_secrets_signature_fails(body: bytes, pair: list[str]) -> None:
    secret, other = pair
    with pytest.raises(WebhookSignatureError):
        verify_signature(body, compute_signature(body, other), [secret])


def test_only_documented_errors_are_raised() -> None:
    assert issubclass(WebhookSignatureError, WebhookError)
    assert issubclass(WebhookPayloadError, WebhookError)
    with pytest.raises(WebhookPayloadError):
        parse_payload(b"[" * 100_000)
    with pytest.raises(WebhookPayloadError):
        parse_payload(b'{"event": "x", "n": ' + b"9" * 10_000 + b"}")
    with pytest.raises(WebhookPayloadError):
        parse_payload(b'{"event": "x", "s": "\\ud800"}')
    assert parse_payload(b'{"event": "x", "s": "\\ud83d\\ude00"}')["s"] == "\U0001f600"
    with pytest.raises(WebhookPayloadError):
        parse_payload('{"event": "é"}'.encode("latin-1"))
    assert parse_payload('{"event": "é"}'.encode("utf-16"))["event"] == "é"


@pytest.fixture
def pending_sessions(fake: Any, user: Any) -> list[ConnectSession]:
    return [start(user, "linkedin"), start(user, "bluesky")]


@pytest.mark.django_db
@VIEW_FUZZ
@given(payload=payloads)
def test_view_answers_2xx_or_400_for_any_signed_body_never_5xx(
    payload: Any, pending_sessions: list[ConnectSession]
) -> None:
    """Whatever UniPost (or a bug there) signs, the view stores it or refuses it; it never
    fails in a way that makes UniPost retry a delivery that can never succeed."""
    data = payload.get("data")
    if isinstance(data, dict) and isinstance(data.get("external_user_id"), str):
        data["external_user_id"] = data["external_user_id"].replace(
            USER, pending_sessions[0].external_user_id
        )
    body = _encode(payload)
    before = WebhookEvent.objects.count()
    answer = Client(raise_request_exception=True).post(
        "/unipost/webhook/",
        data=body,
        content_type="application/json",
        headers={"X-UniPost-Signature": compute_signature(body, "whsec_test")},
    )
    assert answer.status_code in (200, 400)
    event(f"{answer.status_code} {answer.json()['result'] if answer.status_code == 200 else ''}")
    stored = WebhookEvent.objects.count() - before
    if answer.status_code == 400 or answer.json()["duplicate"]:
        assert stored == 0
    else:
        assert stored == 1
        assert answer.json()["result"] in ("applied", "ignored", "unknown_user")
