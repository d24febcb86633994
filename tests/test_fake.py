"""The fake UniPost keeps the contract: envelopes, errors, lifecycle, hosted page, webhooks."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from unipost_connect.testing import FakeUniPost, build_webhook
from unipost_connect.webhooks import WebhookSignatureError, parse_payload, verify_signature

BASE = "https://api.unipost.test"
KEY = "up_test_key"


def post(fake: FakeUniPost, key: str = KEY, **body: Any) -> requests.Response:
    body.setdefault("platform", "linkedin")
    body.setdefault("external_user_id", "42")
    body = {k: v for k, v in body.items() if v is not None}
    return requests.post(
        f"{fake.base_url}/v1/connect/sessions",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=5,
    )


def get(fake: FakeUniPost, session_id: str, key: str = KEY) -> requests.Response:
    return requests.get(
        f"{fake.base_url}/v1/connect/sessions/{session_id}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=5,
    )


def created(fake: FakeUniPost, **body: Any) -> dict[str, Any]:
    answer = post(fake, **body)
    assert answer.status_code == 201, answer.text
    data: dict[str, Any] = answer.json()["data"]
    return data


def is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def assert_error(answer: requests.Response, status: int, code: str, text: str = "") -> None:
    assert answer.status_code == status
    body = answer.json()
    assert body["error"]["code"] == code
    assert body["error"]["normalized_code"] == code.lower()
    assert text in body["error"]["message"]
    assert body["request_id"] == answer.headers["X-Request-Id"]
    assert is_uuid(body["request_id"])


def auth(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def list_accounts(**params: str) -> requests.Response:
    return requests.get(f"{BASE}/v1/accounts", params=params, headers=auth(), timeout=5)


def delete_account(account_id: str) -> requests.Response:
    return requests.delete(f"{BASE}/v1/accounts/{account_id}", headers=auth(), timeout=5)


def connected_account(fake: FakeUniPost, **body: Any) -> str:
    """Create and approve a session; returns the managed account id."""
    data = created(fake, **body)
    fake.approve(data["id"])
    account_id = fake.sessions[data["id"]].managed_account_id
    assert account_id is not None
    return account_id


@pytest.fixture
def custom() -> Iterator[Any]:
    """Build a fake with non-default options and route requests to it."""
    stack: list[Any] = []

    def build(**kwargs: Any) -> FakeUniPost:
        fake = FakeUniPost(api_key=KEY, base_url=BASE, **kwargs)
        context = fake.mock()
        context.__enter__()
        stack.append(context)
        return fake

    yield build
    for context in reversed(stack):
        context.__exit__(None, None, None)


FROZEN = datetime(2026, 12, 3, 8, 0, 0, tzinfo=UTC)


@pytest.fixture
def frozen(custom: Any) -> FakeUniPost:
    """A fake whose clock moves only with ``advance``, for exact times."""
    fake: FakeUniPost = custom(clock=lambda: FROZEN)
    return fake


# -- envelopes and authentication --------------------------------------------------------------------


def test_create_answers_201_inside_data(fake: FakeUniPost) -> None:
    answer = post(fake, external_user_email="a@example.com", return_url="https://site.test/r/")
    assert answer.status_code == 201
    body = answer.json()
    assert set(body) == {"data", "request_id"}
    assert body["request_id"] == answer.headers["X-Request-Id"]
    data = body["data"]
    assert is_uuid(data["id"])
    assert data["status"] == "pending"
    assert data["platform"] == "linkedin"
    assert data["external_user_id"] == "42"
    assert data["external_user_email"] == "a@example.com"
    assert data["return_url"] == "https://site.test/r/"
    assert data["allow_quickstart_creds"] is False
    assert data["expires_at"].endswith("Z") and data["created_at"].endswith("Z")
    assert "completed_at" not in data and "managed_account_id" not in data
    assert answer.headers["Content-Type"] == "application/json"


def test_create_trims_and_lowercases(fake: FakeUniPost) -> None:
    data = created(fake, platform="  LinkedIn ", external_user_id="  42  ")
    assert data["platform"] == "linkedin"
    assert data["external_user_id"] == "42"


def test_bare_objects_without_envelope(custom: Any) -> None:
    fake = custom(envelope=False)
    answer = post(fake)
    assert answer.status_code == 201
    assert answer.json()["status"] == "pending"
    assert "data" not in answer.json()
    assert get(fake, answer.json()["id"]).json()["id"] == answer.json()["id"]


def test_get_answers_200_with_the_same_fields(fake: FakeUniPost) -> None:
    data = created(fake)
    answer = get(fake, data["id"])
    assert answer.status_code == 200
    assert answer.json()["data"] == data


@pytest.mark.parametrize("key", ["up_test_wrong", ""])
def test_wrong_or_missing_key_is_401(fake: FakeUniPost, key: str) -> None:
    answer = post(fake, key=key)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "UNAUTHORIZED"
    assert fake.sessions == {}
    answer = requests.get(f"{BASE}/v1/connect/sessions/{uuid.uuid4()}", timeout=5)
    assert answer.status_code == 401


def test_401_body_is_the_authentication_layers_short_one(fake: FakeUniPost) -> None:
    answer = post(fake, key="up_test_wrong")
    assert answer.json() == {"error": {"code": "UNAUTHORIZED", "message": "Invalid or missing API key"}}
    assert is_uuid(answer.headers["X-Request-Id"])  # the header still carries one


def test_injected_401_has_the_short_body_too(fake: FakeUniPost) -> None:
    fake.fail_next("get", 401)
    answer = requests.get(f"{BASE}/v1/connect/sessions/{uuid.uuid4()}", headers=auth(), timeout=5)
    assert answer.status_code == 401
    assert answer.json() == {"error": {"code": "UNAUTHORIZED", "message": "Injected 401"}}
    assert is_uuid(answer.headers["X-Request-Id"])


def test_ids_are_uuids(fake: FakeUniPost) -> None:
    answer = post(fake)
    data = answer.json()["data"]
    fake.approve(data["id"])
    assert is_uuid(data["id"])
    assert is_uuid(answer.headers["X-Request-Id"])
    assert is_uuid(fake.sessions[data["id"]].managed_account_id or "")


def test_request_ids_are_recorded_in_order(fake: FakeUniPost) -> None:
    first = post(fake)
    second = get(fake, first.json()["data"]["id"])
    unknown = requests.get(f"{BASE}/v1/nothing", headers=auth(), timeout=5)
    assert fake.request_ids == [
        first.headers["X-Request-Id"],
        second.headers["X-Request-Id"],
        unknown.headers["X-Request-Id"],
    ]


def test_unknown_session_is_404(fake: FakeUniPost) -> None:
    assert_error(get(fake, str(uuid.uuid4())), 404, "NOT_FOUND")


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/nothing"), ("GET", "/accounts"), ("POST", "/v1/accounts"), ("GET", "/v1/accounts/x")],
)
def test_unknown_route_is_a_plain_text_404(fake: FakeUniPost, method: str, path: str) -> None:
    answer = requests.request(method, f"{BASE}{path}", headers=auth(), timeout=5)
    assert answer.status_code == 404
    assert answer.headers["Content-Type"].startswith("text/plain")
    assert answer.text == "404 page not found\n"


# -- create validation ----------------------------------------------------------------------------------


def test_platform_outside_the_plan_is_402(custom: Any) -> None:
    fake = custom(plan_platforms=("linkedin", "bluesky"))
    assert_error(post(fake, platform="twitter"), 402, "PLAN_PLATFORM_NOT_ALLOWED", "twitter")
    assert post(fake, platform="linkedin").status_code == 201


@pytest.mark.parametrize("platform", ["myspace", "", None, "twitter linkedin"])
def test_bad_platform_is_422(fake: FakeUniPost, platform: Any) -> None:
    answer = requests.post(
        f"{BASE}/v1/connect/sessions",
        json={"platform": platform, "external_user_id": "1"},
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=5,
    )
    assert_error(answer, 422, "VALIDATION_ERROR", "platform")


@pytest.mark.parametrize("external_user_id", [None, "", "   ", "x" * 257, "é" * 200, "é" * 129])
def test_missing_or_overlong_external_user_id_is_422(fake: FakeUniPost, external_user_id: Any) -> None:
    answer = requests.post(
        f"{BASE}/v1/connect/sessions",
        json={"platform": "linkedin", "external_user_id": external_user_id},
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=5,
    )
    assert_error(answer, 422, "VALIDATION_ERROR", "external_user_id")


def test_external_user_id_of_256_characters_is_accepted(fake: FakeUniPost) -> None:
    assert created(fake, external_user_id="x" * 256)["external_user_id"] == "x" * 256


def test_external_user_id_is_counted_in_utf8_bytes(fake: FakeUniPost) -> None:
    assert_error(post(fake, external_user_id="é" * 200), 422, "VALIDATION_ERROR", "external_user_id")
    assert created(fake, external_user_id=" " + "é" * 128 + " ")["external_user_id"] == "é" * 128


@pytest.mark.parametrize(
    "field",
    [
        {"platform": 7},
        {"external_user_id": 42},
        {"external_user_email": ["a@example.com"]},
        {"return_url": {"url": "https://site.test/"}},
        {"profile_id": 1},
        {"allow_quickstart_creds": "true"},
        {"allow_quickstart_creds": 1},
    ],
)
def test_wrong_json_types_are_an_invalid_request_body(fake: FakeUniPost, field: dict[str, Any]) -> None:
    body = {"platform": "linkedin", "external_user_id": "42", **field}
    answer = requests.post(f"{BASE}/v1/connect/sessions", json=body, headers=auth(), timeout=5)
    assert_error(answer, 422, "VALIDATION_ERROR", "Invalid request body")
    assert fake.sessions == {}


@pytest.mark.parametrize(
    "return_url",
    # An unclosed "[" is a host urlsplit cannot read: refused, never a crash.
    ["javascript:alert(1)", "/relative/path", "ftp://site.test/", "https://", "", "https://[::1/back/"],
)
def test_bad_return_url_is_422(fake: FakeUniPost, return_url: str) -> None:
    assert_error(post(fake, return_url=return_url), 422, "VALIDATION_ERROR", "return_url")


@pytest.mark.parametrize("raw", [b"[1]", b"", b"{not json"])
def test_body_that_is_not_an_object_is_422(fake: FakeUniPost, raw: bytes) -> None:
    answer = requests.post(f"{BASE}/v1/connect/sessions", data=raw, headers=auth(), timeout=5)
    assert_error(answer, 422, "VALIDATION_ERROR", "Invalid request body")


def test_several_profiles_need_profile_id(custom: Any) -> None:
    fake = custom(profiles=("pr_us", "pr_eu"))
    assert_error(post(fake), 422, "VALIDATION_ERROR", "multiple profiles")
    assert_error(post(fake, profile_id="pr_other"), 422, "VALIDATION_ERROR", "profile_id")
    data = created(fake, profile_id="pr_eu")
    assert fake.sessions[data["id"]].profile_id == "pr_eu"


def test_single_profile_is_the_default(fake: FakeUniPost) -> None:
    data = created(fake)
    assert fake.sessions[data["id"]].profile_id == "pr_default"


def test_missing_platform_credentials_is_422_unless_quickstart(custom: Any) -> None:
    fake = custom(platform_credentials=("linkedin",))
    assert_error(
        post(fake, platform="twitter"),
        422,
        "VALIDATION_ERROR",
        "workspace is missing twitter platform credentials",
    )
    assert created(fake, platform="twitter", allow_quickstart_creds=True)["allow_quickstart_creds"] is True
    assert created(fake, platform="linkedin")["status"] == "pending"


def test_bluesky_needs_no_credentials_and_ignores_quickstart(custom: Any) -> None:
    fake = custom(platform_credentials=())
    assert created(fake, platform="bluesky")["status"] == "pending"
    assert created(fake, platform="bluesky", allow_quickstart_creds=True)["status"] == "pending"


# -- lifecycle ------------------------------------------------------------------------------------------


def test_lazy_expiry_after_thirty_minutes(fake: FakeUniPost) -> None:
    data = created(fake)
    fake.advance(minutes=29)
    assert get(fake, data["id"]).json()["data"]["status"] == "pending"
    fake.advance(minutes=2)
    assert fake.sessions[data["id"]].status == "pending"  # lazy: nothing changes until a read
    assert get(fake, data["id"]).json()["data"]["status"] == "expired"
    with pytest.raises(ValueError, match="expired"):
        fake.approve(data["id"])


def test_approve_completes_with_an_account(fake: FakeUniPost) -> None:
    data = created(fake, return_url="https://site.test/back/")
    target = fake.approve(data["id"], account_name="Example Co")
    assert target == "https://site.test/back/?connect_status=success"
    read = get(fake, data["id"]).json()["data"]
    assert read["status"] == "completed"
    assert read["managed_account_id"] == read["completed_social_account_id"]
    assert is_uuid(read["managed_account_id"])
    assert read["completed_at"].endswith("Z")
    account = fake.accounts[read["managed_account_id"]]
    assert (account.account_name, account.external_user_id, account.platform) == (
        "Example Co",
        "42",
        "linkedin",
    )
    with pytest.raises(ValueError):
        fake.approve(data["id"])


def test_deny_cancels_with_access_denied(fake: FakeUniPost) -> None:
    data = created(fake, return_url="https://site.test/back/")
    target = fake.deny(data["id"])
    assert target is not None
    assert parse_qs(urlsplit(target).query) == {"connect_status": ["cancelled"], "reason": ["access_denied"]}
    assert get(fake, data["id"]).json()["data"]["status"] == "cancelled"
    assert fake.outbox == []


def test_cancelled_session_gets_completed_at(frozen: FakeUniPost) -> None:
    data = created(frozen)
    frozen.advance(minutes=2)
    frozen.deny(data["id"])
    read = get(frozen, data["id"]).json()["data"]
    assert read["completed_at"] == "2026-12-03T08:02:00Z"
    assert "managed_account_id" not in read


def test_deny_reason_is_the_providers_error_description(fake: FakeUniPost) -> None:
    data = created(fake, return_url="https://site.test/back/")
    target = fake.deny(data["id"], error_description="The user denied your request")
    assert target is not None
    assert parse_qs(urlsplit(target).query)["reason"] == ["The user denied your request"]


def test_error_reason_defaults_to_token_exchange_failed(fake: FakeUniPost) -> None:
    data = created(fake, return_url="https://site.test/back/")
    target = fake.error(data["id"])
    assert target == "https://site.test/back/?connect_status=error&reason=token_exchange_failed"


def test_error_leaves_the_session_pending(fake: FakeUniPost) -> None:
    data = created(fake, return_url="https://site.test/back/")
    target = fake.error(data["id"], reason="invalid_scope")
    assert target is not None
    assert parse_qs(urlsplit(target).query) == {"connect_status": ["error"], "reason": ["invalid_scope"]}
    assert get(fake, data["id"]).json()["data"]["status"] == "pending"
    # The user may try again.
    fake.approve(data["id"])
    assert get(fake, data["id"]).json()["data"]["status"] == "completed"


def test_unknown_session_cannot_be_approved(fake: FakeUniPost) -> None:
    with pytest.raises(KeyError):
        fake.approve(str(uuid.uuid4()))


def test_without_return_url_there_is_no_redirect(fake: FakeUniPost) -> None:
    data = created(fake)
    assert fake.approve(data["id"]) is None


@pytest.mark.parametrize(
    ("return_url", "expected"),
    [
        ("https://site.test/back/", "https://site.test/back/?connect_status=success"),
        ("https://site.test/back/?ref=abc", "https://site.test/back/?ref=abc&connect_status=success"),
        ("https://site.test/back/?", "https://site.test/back/?connect_status=success"),
        ("https://site.test/back/?a=1#top", "https://site.test/back/?a=1&connect_status=success#top"),
    ],
)
def test_redirect_appends_to_the_query(fake: FakeUniPost, return_url: str, expected: str) -> None:
    data = created(fake, return_url=return_url)
    assert fake.approve(data["id"]) == expected


def test_reconnect_on_oauth_platform_reuses_the_managed_account(fake: FakeUniPost) -> None:
    first = created(fake, platform="linkedin", external_user_id="42")
    fake.approve(first["id"])
    second = created(fake, platform="linkedin", external_user_id="42")
    fake.approve(second["id"])
    other = created(fake, platform="linkedin", external_user_id="43")
    fake.approve(other["id"])
    ids = [get(fake, s["id"]).json()["data"]["managed_account_id"] for s in (first, second, other)]
    assert ids[0] == ids[1]
    assert ids[2] != ids[0]


def test_reconnect_keeps_connected_at(fake: FakeUniPost) -> None:
    account_id = connected_account(fake)
    first = fake.accounts[account_id].connected_at
    fake.advance(hours=1)
    assert connected_account(fake) == account_id
    assert fake.accounts[account_id].connected_at == first
    (listed,) = list_accounts().json()["data"]
    assert listed["connected_at"] == first.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_reuse_is_keyed_on_the_profile_too(custom: Any) -> None:
    fake = custom(profiles=("pr_us", "pr_eu"))
    us = connected_account(fake, profile_id="pr_us")
    eu = connected_account(fake, profile_id="pr_eu")
    assert us != eu
    assert connected_account(fake, profile_id="pr_us") == us


def test_reconnect_on_bluesky_gives_a_new_account(fake: FakeUniPost) -> None:
    first = created(fake, platform="bluesky", external_user_id="42")
    fake.approve(first["id"])
    second = created(fake, platform="bluesky", external_user_id="42")
    fake.approve(second["id"])
    ids = {get(fake, s["id"]).json()["data"]["managed_account_id"] for s in (first, second)}
    assert len(ids) == 2


def test_accounts_list_items_have_every_field_and_meta(fake: FakeUniPost) -> None:
    account_id = connected_account(fake)
    listed = list_accounts(external_user_id="42")
    assert listed.status_code == 200
    body = listed.json()
    assert set(body) == {"data", "meta", "request_id"}
    assert body["meta"] == {"total": 1, "limit": 100}
    assert body["data"] == [
        {
            "id": account_id,
            "platform": "linkedin",
            "account_name": "LinkedIn user 42",
            "status": "active",
            "connection_type": "managed",
            "external_user_id": "42",
            "profile_id": "pr_default",
            "connected_at": fake.accounts[account_id].connected_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    ]


def test_accounts_list_filters_by_user_platform_and_profile(custom: Any) -> None:
    fake = custom(profiles=("pr_us", "pr_eu"))
    us_linkedin = connected_account(fake, profile_id="pr_us", platform="linkedin")
    us_threads = connected_account(fake, profile_id="pr_us", platform="threads")
    eu_linkedin = connected_account(fake, profile_id="pr_eu", platform="linkedin")
    other_user = connected_account(fake, profile_id="pr_us", platform="linkedin", external_user_id="43")

    def ids(**params: str) -> list[str]:
        body = list_accounts(**params).json()
        assert body["meta"]["total"] == len(body["data"])
        return [item["id"] for item in body["data"]]

    assert ids() == [us_linkedin, us_threads, eu_linkedin, other_user]
    assert ids(platform="linkedin") == [us_linkedin, eu_linkedin, other_user]
    assert ids(profile_id="pr_us", external_user_id="42") == [us_linkedin, us_threads]
    assert ids(external_user_id="42", platform="linkedin", profile_id="pr_eu") == [eu_linkedin]
    assert ids(external_user_id="nobody") == []


def test_delete_answers_disconnected_true_and_unlists(fake: FakeUniPost) -> None:
    account_id = connected_account(fake)
    deleted = delete_account(account_id)
    assert deleted.status_code == 200
    assert deleted.json() == {"data": {"disconnected": True}, "request_id": deleted.headers["X-Request-Id"]}
    assert list_accounts().json() == {
        "data": [],
        "meta": {"total": 0, "limit": 100},
        "request_id": fake.request_ids[-1],
    }


def test_delete_sends_account_disconnected_with_every_field(frozen: FakeUniPost) -> None:
    account_id = connected_account(frozen)
    frozen.advance(minutes=5)
    delete_account(account_id)
    delivery = frozen.outbox[-1]
    assert delivery.event == "account.disconnected"
    assert delivery.payload == {
        "event": "account.disconnected",
        "timestamp": "2026-12-03T08:05:00Z",
        "data": {
            "social_account_id": account_id,
            "platform": "linkedin",
            "profile_id": "pr_default",
            "account_name": "LinkedIn user 42",
            "disconnected_at": "2026-12-03T08:05:00Z",
            "reason": "user_initiated",
        },
    }


def test_repeated_delete_answers_200_without_a_second_webhook(fake: FakeUniPost) -> None:
    account_id = connected_account(fake)
    assert delete_account(account_id).status_code == 200
    again = delete_account(account_id)
    assert again.status_code == 200
    assert again.json()["data"] == {"disconnected": True}
    assert [d.event for d in fake.outbox] == ["account.connected", "account.disconnected"]


def test_delete_of_an_unknown_account_is_a_json_404(fake: FakeUniPost) -> None:
    assert_error(delete_account(str(uuid.uuid4())), 404, "NOT_FOUND")


def test_fail_token_refresh_keeps_the_account_listed_as_reconnect_required(fake: FakeUniPost) -> None:
    account_id = connected_account(fake)
    fake.fail_token_refresh(account_id)
    (listed,) = list_accounts(external_user_id="42").json()["data"]
    assert (listed["id"], listed["status"]) == (account_id, "reconnect_required")


@pytest.mark.parametrize("reason", ["refresh_failed", "missing_refresh_token", "decrypt_failed"])
def test_fail_token_refresh_sends_the_workers_account_disconnected(frozen: FakeUniPost, reason: str) -> None:
    account_id = connected_account(frozen)
    frozen.advance(days=1)
    delivery = frozen.fail_token_refresh(account_id, reason=reason)
    assert frozen.outbox[-1] == delivery
    assert list(delivery.payload) == ["event", "timestamp", "data"]
    assert delivery.payload["timestamp"] == "2026-12-04T08:00:00Z"
    assert delivery.payload["data"] == {
        "social_account_id": account_id,
        "platform": "linkedin",
        "profile_id": "pr_default",
        "account_name": "LinkedIn user 42",
        "external_user_id": "42",
        "connection_type": "managed",
        "disconnected_at": "2026-12-04T08:00:00Z",
        "reason": reason,
    }


def test_fail_token_refresh_refuses_an_unknown_reason_or_a_second_failure(fake: FakeUniPost) -> None:
    account_id = connected_account(fake)
    with pytest.raises(ValueError, match="unknown refresh failure"):
        fake.fail_token_refresh(account_id, reason="user_initiated")
    fake.fail_token_refresh(account_id)
    with pytest.raises(ValueError, match="reconnect_required"):
        fake.fail_token_refresh(account_id)
    with pytest.raises(KeyError):
        fake.fail_token_refresh(str(uuid.uuid4()))


def test_reconnect_after_a_refresh_failure_brings_the_same_account_back(fake: FakeUniPost) -> None:
    account_id = connected_account(fake)
    connected_at = fake.accounts[account_id].connected_at
    fake.fail_token_refresh(account_id, reason="missing_refresh_token")
    fake.advance(days=2)
    assert connected_account(fake) == account_id
    (listed,) = list_accounts().json()["data"]
    assert (listed["id"], listed["status"]) == (account_id, "active")
    assert fake.accounts[account_id].connected_at == connected_at
    assert fake.outbox[-1].payload["data"]["social_account_id"] == account_id


# -- webhooks -------------------------------------------------------------------------------------------


def test_approve_emits_a_signed_account_connected(fake: FakeUniPost) -> None:
    data = created(fake)
    fake.approve(data["id"], account_name="Example Co")
    (delivery,) = fake.outbox
    verify_signature(delivery.body, delivery.headers["X-UniPost-Signature"], ["whsec_test"])
    with pytest.raises(WebhookSignatureError):
        verify_signature(delivery.body, delivery.headers["X-UniPost-Signature"], ["whsec_other"])
    payload = parse_payload(delivery.body)
    assert payload == delivery.payload
    assert delivery.headers["X-UniPost-Event"] == "account.connected"
    assert payload["event"] == "account.connected"
    assert payload["timestamp"].endswith("Z")
    managed = fake.sessions[data["id"]].managed_account_id
    assert payload["data"] == {
        "social_account_id": managed,
        "profile_id": "pr_default",
        "platform": "linkedin",
        "account_name": "Example Co",
        "external_user_id": "42",
        "connection_type": "managed",
    }
    assert "X-UniPost-Delivery" not in delivery.headers  # the live worker does not send it today


def test_on_webhook_hook_sees_each_delivery(fake: FakeUniPost) -> None:
    seen: list[str] = []
    fake.on_webhook = lambda delivery: seen.append(delivery.event)
    fake.approve(created(fake)["id"])
    assert seen == ["account.connected"]


def test_build_webhook_variants() -> None:
    old = build_webhook("account.connected", {"platform": "x"}, "whsec_a", event_id="", delivery_id="dlv_1")
    assert "event_id" not in old.payload
    assert old.headers["X-UniPost-Delivery"] == "dlv_1"
    verify_signature(old.body, old.headers["X-UniPost-Signature"], ["whsec_a"])
    kwargs = old.django_client_kwargs()
    assert kwargs["data"] == old.body and kwargs["content_type"] == "application/json"


def test_account_webhooks_come_without_event_id(fake: FakeUniPost) -> None:
    fake.approve(created(fake)["id"])
    (delivery,) = fake.outbox
    assert list(delivery.payload) == ["event", "timestamp", "data"]
    assert list(build_webhook("account.connected", {}, "whsec_a").payload) == ["event", "timestamp", "data"]


def test_build_webhook_sends_event_id_only_when_given() -> None:
    delivery = build_webhook("post.published", {"id": "p"}, "whsec_a", event_id="evt_x")
    assert list(delivery.payload) == ["event", "event_id", "timestamp", "data"]
    assert delivery.payload["event_id"] == "evt_x"
    assert "event_id" not in build_webhook("post.published", {"id": "p"}, "whsec_a").payload


def test_webhook_deliveries_carry_the_json_content_type(fake: FakeUniPost) -> None:
    fake.approve(created(fake)["id"])
    (delivery,) = fake.outbox
    assert delivery.headers["Content-Type"] == "application/json"
    kwargs = delivery.django_client_kwargs()
    assert kwargs["content_type"] == "application/json"
    # Given once, as ``content_type``; the other headers pass as they are.
    assert kwargs["headers"] == {
        "X-UniPost-Signature": delivery.headers["X-UniPost-Signature"],
        "X-UniPost-Event": "account.connected",
    }
    assert json.loads(kwargs["data"]) == delivery.payload


# -- the hosted page ------------------------------------------------------------------------------------


def hosted(fake: FakeUniPost, url: str, method: str = "GET", form: str = "") -> Any:
    parts = urlsplit(url)
    return fake.handle(method, parts.path, query=parts.query, body=form.encode())


def test_hosted_page_get_shows_the_form(fake: FakeUniPost) -> None:
    data = created(fake, return_url="https://site.test/back/")
    page = hosted(fake, data["url"])
    assert page.status == 200
    assert b"Approve" in page.body and b"Deny" in page.body and b"Error" in page.body
    assert page.headers["Content-Type"].startswith("text/html")


def test_hosted_page_says_which_site_asked_and_links_back(fake: FakeUniPost) -> None:
    data = created(fake, return_url="https://site.test/back/?ref=7")
    page = hosted(fake, data["url"]).body.decode()
    assert "https://site.test asks to connect your LinkedIn account." in page
    assert "<a href='https://site.test/'>Back to https://site.test</a>" in page
    # After an approval that does not return, the page still leads back.
    done = hosted(fake, data["url"], "POST", "action=approve_stay").body.decode()
    assert "Back to https://site.test" in done


def test_hosted_page_of_a_session_without_return_url_names_no_site(fake: FakeUniPost) -> None:
    data = created(fake)
    page = hosted(fake, data["url"]).body.decode()
    assert "A site asks to connect" in page and "Back to" not in page


def test_hosted_page_is_served_through_responses_too(fake: FakeUniPost) -> None:
    data = created(fake)
    page = requests.get(data["url"], timeout=5)
    assert page.status_code == 200
    assert "LinkedIn" in page.text


@pytest.mark.parametrize(
    ("action", "status", "query"),
    [
        ("approve", "completed", {"connect_status": ["success"]}),
        ("deny", "cancelled", {"connect_status": ["cancelled"], "reason": ["access_denied"]}),
        ("error", "pending", {"connect_status": ["error"], "reason": ["token_exchange_failed"]}),
    ],
)
def test_hosted_page_post_redirects_back(fake: FakeUniPost, action: str, status: str, query: Any) -> None:
    data = created(fake, return_url="https://site.test/back/?ref=7")
    answer = hosted(fake, data["url"], "POST", f"action={action}")
    assert answer.status == 302
    location = urlsplit(answer.headers["Location"])
    assert location.netloc == "site.test" and location.path == "/back/"
    assert parse_qs(location.query) == {"ref": ["7"], **query}
    assert "session" not in parse_qs(location.query)  # the redirect carries no session id
    assert get(fake, data["id"]).json()["data"]["status"] == status


def test_hosted_page_approve_stay_completes_without_redirect(fake: FakeUniPost) -> None:
    data = created(fake, return_url="https://site.test/back/")
    answer = hosted(fake, data["url"], "POST", "action=approve_stay&account_name=Mine")
    assert answer.status == 200
    assert fake.sessions[data["id"]].status == "completed"
    assert fake.outbox[0].payload["data"]["account_name"] == "Mine"


def test_hosted_page_without_return_url_shows_its_own_page(fake: FakeUniPost) -> None:
    data = created(fake)
    answer = hosted(fake, data["url"], "POST", "action=deny")
    assert answer.status == 200
    assert b"cancelled" in answer.body


@pytest.mark.parametrize("reason", ["profile_fetch_failed", "LinkedIn is temporarily unavailable"])
def test_hosted_page_error_sends_the_chosen_reason(fake: FakeUniPost, reason: str) -> None:
    data = created(fake, return_url="https://site.test/back/")
    assert f"value='{reason}'".encode() in hosted(fake, data["url"]).body  # offered by the form
    form = urlencode({"action": "error", "reason": reason})
    answer = hosted(fake, data["url"], "POST", form)
    assert parse_qs(urlsplit(answer.headers["Location"]).query) == {
        "connect_status": ["error"],
        "reason": [reason],
    }
    assert fake.sessions[data["id"]].status == "pending"


@pytest.mark.parametrize(
    ("failure", "status"), [("account_owned", 409), ("plan_limit", 402), ("expired", 410)]
)
def test_hosted_page_failures_never_redirect_back(fake: FakeUniPost, failure: str, status: int) -> None:
    data = created(fake, return_url="https://site.test/back/")
    assert f"value='{failure}'".encode() in hosted(fake, data["url"]).body  # a button on the form
    answer = hosted(fake, data["url"], "POST", f"action={failure}")
    assert answer.status == status
    assert "Location" not in answer.headers
    assert answer.headers["Content-Type"].startswith("text/html")
    assert fake.sessions[data["id"]].status == "pending"
    assert fake.outbox == []


@pytest.mark.parametrize("failure", ["account_owned", "plan_limit"])
def test_fail_on_hosted_page_leaves_the_session_open_to_a_retry(fake: FakeUniPost, failure: str) -> None:
    data = created(fake)
    page = fake.fail_on_hosted_page(data["id"], failure)
    assert page.status in (402, 409)
    assert get(fake, data["id"]).json()["data"]["status"] == "pending"
    assert hosted(fake, data["url"]).status == 200  # the user may try again


def test_fail_on_hosted_page_expired_means_the_deadline_passed(fake: FakeUniPost) -> None:
    data = created(fake)
    page = fake.fail_on_hosted_page(data["id"], "expired")
    assert page.status == 410
    assert fake.sessions[data["id"]].status == "pending"  # expiry is lazy, as on the live server
    assert get(fake, data["id"]).json()["data"]["status"] == "expired"


def test_fail_on_hosted_page_refuses_an_unknown_failure(fake: FakeUniPost) -> None:
    data = created(fake)
    with pytest.raises(ValueError, match="unknown hosted-page failure"):
        fake.fail_on_hosted_page(data["id"], "explode")


def test_hosted_page_unknown_action_is_400(fake: FakeUniPost) -> None:
    data = created(fake)
    assert hosted(fake, data["url"], "POST", "action=explode").status == 400
    assert fake.sessions[data["id"]].status == "pending"


def test_hosted_page_wrong_state_is_403(fake: FakeUniPost) -> None:
    data = created(fake)
    forged = data["url"].split("&state=")[0] + "&state=guess"
    assert hosted(fake, forged).status == 403
    assert hosted(fake, forged, "POST", "action=approve").status == 403
    assert hosted(fake, data["url"].split("&state=")[0]).status == 403
    assert (
        hosted(fake, f"https://app.unipost.test/connect/linkedin?session={uuid.uuid4()}&state=x").status
        == 403
    )
    assert fake.sessions[data["id"]].status == "pending"


def test_hosted_page_non_ascii_state_is_403_not_a_crash(fake: FakeUniPost) -> None:
    data = created(fake)
    forged = data["url"].split("&state=")[0] + "&state=%C3%A9t%C3%A9"
    assert hosted(fake, forged).status == 403
    assert hosted(fake, forged, "POST", "action=approve&state=%FF").status == 403


def test_hosted_page_for_a_finished_session_is_410(fake: FakeUniPost) -> None:
    done = created(fake)
    fake.deny(done["id"])
    assert hosted(fake, done["url"]).status == 410
    assert hosted(fake, done["url"], "POST", "action=approve").status == 410
    late = created(fake)
    fake.advance(minutes=31)
    assert hosted(fake, late["url"]).status == 410
    assert fake.sessions[late["id"]].status == "expired"


# -- fault injection ------------------------------------------------------------------------------------


def test_fail_next_targets_one_endpoint_a_number_of_times(fake: FakeUniPost) -> None:
    fake.fail_next("create", 503, times=2)
    assert [post(fake).status_code for _ in range(3)] == [503, 503, 201]
    data = created(fake)
    assert get(fake, data["id"]).status_code == 200


def test_fail_next_raw_body_and_headers(fake: FakeUniPost) -> None:
    fake.fail_next(None, 502, body="<html>Bad Gateway</html>", headers={"Retry-After": "2"})
    answer = post(fake)
    assert answer.status_code == 502
    assert answer.text == "<html>Bad Gateway</html>"
    assert answer.headers["Retry-After"] == "2"
    assert is_uuid(answer.headers["X-Request-Id"])


def test_injected_error_envelope_carries_the_request_id(fake: FakeUniPost) -> None:
    fake.fail_next("create", 503)
    assert_error(post(fake), 503, "INTERNAL_ERROR", "Injected 503")
    fake.fail_next("create", 500, headers={"X-Request-Id": "req_given"})
    answer = post(fake)
    assert answer.json()["request_id"] == answer.headers["X-Request-Id"] == "req_given"


def test_fail_next_raises_the_exception(fake: FakeUniPost) -> None:
    fake.fail_next("get", exception=requests.ConnectTimeout("boom"))
    with pytest.raises(requests.ConnectTimeout):
        get(fake, "some-id")
    assert get(fake, "some-id").status_code == 404


def test_rate_limit_next(fake: FakeUniPost) -> None:
    fake.rate_limit_next("create", retry_after=7)
    answer = post(fake)
    assert (answer.status_code, answer.headers["Retry-After"]) == (429, "7")
    assert answer.json()["error"]["code"] == "RATE_LIMITED"
    assert fake.requests == [("POST", "/v1/connect/sessions")]


def test_rate_limit_body_gives_the_live_advice(fake: FakeUniPost) -> None:
    fake.rate_limit_next("create")
    error = post(fake).json()["error"]
    assert (error["next_action"], error["is_retriable"]) == ("wait_and_retry", True)
    assert "Retry-After" in error["hint"]
