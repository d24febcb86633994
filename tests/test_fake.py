"""The fake UniPost keeps the contract: envelopes, errors, lifecycle, hosted page, webhooks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

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


def assert_error(answer: requests.Response, status: int, code: str, text: str = "") -> None:
    assert answer.status_code == status
    body = answer.json()
    assert body["error"]["code"] == code
    assert body["error"]["normalized_code"] == code.lower()
    assert text in body["error"]["message"]
    assert body["request_id"] == answer.headers["X-Request-Id"]
    assert body["request_id"].startswith("req_")


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


# -- envelopes and authentication --------------------------------------------------------------------


def test_create_answers_201_inside_data(fake: FakeUniPost) -> None:
    answer = post(fake, external_user_email="a@example.com", return_url="https://site.test/r/")
    assert answer.status_code == 201
    body = answer.json()
    assert set(body) == {"data", "request_id"}
    assert body["request_id"] == answer.headers["X-Request-Id"]
    data = body["data"]
    assert data["id"].startswith("cs_")
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
    assert_error(post(fake, key=key), 401, "UNAUTHORIZED")
    assert fake.sessions == {}
    answer = requests.get(f"{BASE}/v1/connect/sessions/cs_x", timeout=5)
    assert_error(answer, 401, "UNAUTHORIZED")


def test_unknown_session_is_404(fake: FakeUniPost) -> None:
    assert_error(get(fake, "cs_unknown"), 404, "NOT_FOUND")


def test_unknown_endpoint_is_404(fake: FakeUniPost) -> None:
    answer = requests.get(f"{BASE}/v1/nothing", headers={"Authorization": f"Bearer {KEY}"}, timeout=5)
    assert_error(answer, 404, "NOT_FOUND")


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


@pytest.mark.parametrize("external_user_id", [None, "", "   ", "x" * 257])
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


@pytest.mark.parametrize(
    "return_url", ["javascript:alert(1)", "/relative/path", "ftp://site.test/", "https://", ""]
)
def test_bad_return_url_is_422(fake: FakeUniPost, return_url: str) -> None:
    assert_error(post(fake, return_url=return_url), 422, "VALIDATION_ERROR", "return_url")


def test_body_that_is_not_an_object_is_422(fake: FakeUniPost) -> None:
    answer = requests.post(
        f"{BASE}/v1/connect/sessions", data=b"[1]", headers={"Authorization": f"Bearer {KEY}"}, timeout=5
    )
    assert_error(answer, 422, "VALIDATION_ERROR")


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
    assert read["managed_account_id"].startswith("sa_linkedin_")
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
        fake.approve("cs_nope")


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


def test_reconnect_on_bluesky_gives_a_new_account(fake: FakeUniPost) -> None:
    first = created(fake, platform="bluesky", external_user_id="42")
    fake.approve(first["id"])
    second = created(fake, platform="bluesky", external_user_id="42")
    fake.approve(second["id"])
    ids = {get(fake, s["id"]).json()["data"]["managed_account_id"] for s in (first, second)}
    assert len(ids) == 2


def test_accounts_list_and_delete(fake: FakeUniPost) -> None:
    data = created(fake)
    fake.approve(data["id"])
    headers = {"Authorization": f"Bearer {KEY}"}
    listed = requests.get(
        f"{BASE}/v1/accounts", params={"external_user_id": "42"}, headers=headers, timeout=5
    )
    assert listed.status_code == 200
    (account,) = listed.json()["data"]
    assert account["connection_type"] == "managed"
    assert account["status"] == "active"
    deleted = requests.delete(f"{BASE}/v1/accounts/{account['id']}", headers=headers, timeout=5)
    assert deleted.status_code == 200
    assert fake.outbox[-1].event == "account.disconnected"
    assert fake.outbox[-1].payload["data"] == {"social_account_id": account["id"], "platform": "linkedin"}
    again = requests.delete(f"{BASE}/v1/accounts/{account['id']}", headers=headers, timeout=5)
    assert_error(again, 404, "NOT_FOUND")


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
    assert payload["event_id"].startswith("evt_")
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
        ("error", "pending", {"connect_status": ["error"], "reason": ["server_error"]}),
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
    assert hosted(fake, "https://app.unipost.test/connect/linkedin?session=cs_none&state=x").status == 403
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
    assert answer.headers["X-Request-Id"].startswith("req_")


def test_fail_next_raises_the_exception(fake: FakeUniPost) -> None:
    fake.fail_next("get", exception=requests.ConnectTimeout("boom"))
    with pytest.raises(requests.ConnectTimeout):
        get(fake, "cs_1")
    assert get(fake, "cs_1").status_code == 404


def test_rate_limit_next(fake: FakeUniPost) -> None:
    fake.rate_limit_next("create", retry_after=7)
    answer = post(fake)
    assert (answer.status_code, answer.headers["Retry-After"]) == (429, "7")
    assert answer.json()["error"]["code"] == "RATE_LIMITED"
    assert fake.requests == [("POST", "/v1/connect/sessions")]
