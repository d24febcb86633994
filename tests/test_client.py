"""The UniPost client: requests it sends, answers it parses, errors it raises, secrets it keeps."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
import responses
from django.test import override_settings

from tests.faults import CREATE_FAULTS, NOT_HTTP_URLS, Fault, fault_id
from unipost_connect import __version__
from unipost_connect.client import RemoteSession, UniPostClient, get_client
from unipost_connect.errors import (
    AuthenticationError,
    EndpointNotFoundError,
    NotFoundError,
    PlanLimitError,
    RateLimitedError,
    ServerError,
    UniPostAPIError,
    UniPostError,
    UniPostResponseError,
    UniPostValidationError,
)
from unipost_connect.testing import FakeUniPost

BASE = "https://api.unipost.test"
KEY = "up_test_key"
SESSIONS = f"{BASE}/v1/connect/sessions"

# The live server's create answer, as UniPost's backend sends it (inside "data").
CREATED = {
    "id": "cs_7Qm2xK9pLw3Rt8Vb",
    "platform": "linkedin",
    "external_user_id": "42",
    "external_user_email": "alex@example.com",
    "return_url": "https://app.example.com/unipost/return/8b0f1c9e/",
    "allow_quickstart_creds": False,
    "status": "pending",
    "url": "https://app.unipost.dev/connect/linkedin?session=cs_7Qm2xK9pLw3Rt8Vb&state=SECRETSTATE123",
    "expires_at": "2026-11-29T20:05:00Z",
    "created_at": "2026-11-29T19:35:00Z",
}
COMPLETED = {
    **CREATED,
    "status": "completed",
    "completed_at": "2026-11-29T19:37:12Z",
    "completed_social_account_id": "sa_linkedin_9d2e4f",
    "managed_account_id": "sa_linkedin_9d2e4f",
}


def make_client(**kwargs: Any) -> UniPostClient:
    kwargs.setdefault("sleep", lambda seconds: None)
    return UniPostClient(KEY, BASE, **kwargs)


def envelope(data: dict[str, Any], request_id: str = "req_body") -> dict[str, Any]:
    return {"data": data, "request_id": request_id}


def error_body(code: str, message: str, request_id: str | None = "req_body", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "error": {"code": code, "normalized_code": code.lower(), "message": message, **extra}
    }
    if request_id is not None:
        body["request_id"] = request_id
    return body


def create(client: UniPostClient, **kwargs: Any) -> RemoteSession:
    kwargs.setdefault("platform", "linkedin")
    kwargs.setdefault("external_user_id", "42")
    return client.create_session(**kwargs)


# -- create and read, against the fake ----------------------------------------------------


def test_create_with_data_envelope(fake: FakeUniPost) -> None:
    remote = create(
        make_client(),
        external_user_email="alex@example.com",
        return_url="https://site.test/back/1/",
        profile_id="pr_default",
    )
    stored = fake.sessions[remote.id]  # the id UniPost gave, whatever its shape
    assert remote.status == "pending"
    assert remote.platform == "linkedin"
    assert remote.external_user_id == "42"
    assert remote.url == stored.url
    assert remote.url.startswith("https://app.unipost.test/connect/linkedin?session=")
    assert remote.expires_at is not None and remote.created_at is not None
    assert (remote.expires_at - remote.created_at).total_seconds() == 30 * 60
    assert remote.expires_at.tzinfo is not None
    assert remote.request_id  # ids have no promised prefix (UUIDs on the live server)
    assert stored.external_user_email == "alex@example.com"
    assert stored.return_url == "https://site.test/back/1/"
    assert stored.profile_id == "pr_default"


def test_create_sends_the_contract_body() -> None:
    with responses.RequestsMock() as rsps:
        rsps.post(SESSIONS, json=envelope(CREATED), status=201)
        create(make_client(), return_url="https://site.test/r/", allow_quickstart_creds=True)
        sent = json.loads(rsps.calls[0].request.body or b"")
    assert sent == {
        "platform": "linkedin",
        "external_user_id": "42",
        "allow_quickstart_creds": True,
        "return_url": "https://site.test/r/",
    }


def test_create_and_get_without_data_envelope() -> None:
    fake = FakeUniPost(api_key=KEY, base_url=BASE, envelope=False)
    with fake.mock():
        client = make_client()
        created = create(client)
        fake.approve(created.id)
        read = client.get_session(created.id)
    assert created.status == "pending"
    # Without an envelope there is no request_id in the body: the header gives it.
    assert created.request_id
    assert read.status == "completed"
    assert read.managed_account_id == fake.sessions[created.id].managed_account_id


@pytest.mark.parametrize("wrapped", [True, False], ids=["envelope", "bare"])
def test_get_completed_session(wrapped: bool) -> None:
    body = envelope(COMPLETED, "req_0c4b") if wrapped else COMPLETED
    with responses.RequestsMock() as rsps:
        rsps.get(f"{SESSIONS}/cs_7Qm2xK9pLw3Rt8Vb", json=body, headers={"X-Request-Id": "req_header"})
        remote = make_client().get_session("cs_7Qm2xK9pLw3Rt8Vb")
    assert remote.status == "completed"
    assert remote.managed_account_id == "sa_linkedin_9d2e4f"
    assert remote.completed_at == datetime(2026, 11, 29, 19, 37, 12, tzinfo=UTC)
    assert remote.request_id == ("req_0c4b" if wrapped else "req_header")


def test_get_takes_completed_social_account_id_when_managed_account_id_is_absent() -> None:
    data = {k: v for k, v in COMPLETED.items() if k != "managed_account_id"}
    with responses.RequestsMock() as rsps:
        rsps.get(f"{SESSIONS}/cs_1", json=envelope(data))
        assert make_client().get_session("cs_1").managed_account_id == "sa_linkedin_9d2e4f"


def test_get_reads_lazy_expiry_from_the_fake(fake: FakeUniPost) -> None:
    client = make_client()
    remote = create(client)
    fake.advance(minutes=31)
    assert client.get_session(remote.id).status == "expired"


def test_get_quotes_the_session_id() -> None:
    with responses.RequestsMock() as rsps:
        rsps.get(f"{SESSIONS}/a%2F..%2Fb%3Fx", json=envelope({**CREATED, "id": "a/../b?x"}))
        assert make_client().get_session("a/../b?x").id == "a/../b?x"


def test_unknown_status_is_passed_through_as_is() -> None:
    for status in ("authorizing", "Completed", "COMPLETED", " completed"):
        with responses.RequestsMock() as rsps:
            rsps.get(f"{SESSIONS}/cs_1", json=envelope({**CREATED, "status": status}))
            assert make_client().get_session("cs_1").status == status


def test_extra_unknown_fields_are_ignored() -> None:
    data = {**CREATED, "brand_new_field": {"nested": [1, 2]}, "status_v2": "x", "id_alias": 7}
    with responses.RequestsMock() as rsps:
        rsps.post(SESSIONS, json={**envelope(data), "meta": {"page": 1}}, status=201)
        remote = create(make_client())
    assert remote.id == CREATED["id"]
    assert remote.status == "pending"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-29T20:05:00Z", datetime(2026, 11, 29, 20, 5, tzinfo=UTC)),
        ("2026-11-29T21:05:00+01:00", datetime(2026, 11, 29, 20, 5, tzinfo=UTC)),
        ("2026-11-29T20:05:00", datetime(2026, 11, 29, 20, 5, tzinfo=UTC)),
        ("0001-01-01T00:00:00+14:00", None),
        ("9999-12-31T23:59:59-14:00", None),
        ("2026-13-45T99:00:00Z", None),
        ("", None),
    ],
)
def test_timestamps_are_read_in_utc(value: str, expected: datetime | None) -> None:
    with responses.RequestsMock() as rsps:
        rsps.get(f"{SESSIONS}/cs_1", json=envelope({**COMPLETED, "completed_at": value}))
        completed_at = make_client().get_session("cs_1").completed_at
    assert completed_at == expected
    assert completed_at is None or completed_at.utcoffset() is not None


def test_timestamps_that_do_not_parse_are_none() -> None:
    data = {**CREATED, "expires_at": "soon", "created_at": 1700000000}
    with responses.RequestsMock() as rsps:
        rsps.post(SESSIONS, json=envelope(data), status=201)
        remote = create(make_client())
    assert remote.expires_at is None
    assert remote.created_at is None


# -- missing and unusable fields -------------------------------------------------------------


@pytest.mark.parametrize("field", ["id", "url", "status"])
def test_create_answer_missing_a_field_is_refused(field: str) -> None:
    data = {k: v for k, v in CREATED.items() if k != field}
    with responses.RequestsMock() as rsps:
        rsps.post(SESSIONS, json=envelope(data, "req_m"), status=201)
        with pytest.raises(UniPostResponseError) as info:
            create(make_client())
    assert field in info.value.message
    assert info.value.request_id == "req_m"
    assert info.value.status == 201
    assert info.value.code == "INVALID_RESPONSE"


@pytest.mark.parametrize("value", ["", "   ", None, 17, ["cs_1"]])
def test_blank_or_non_string_id_counts_as_missing(value: Any) -> None:
    with responses.RequestsMock() as rsps:
        rsps.get(f"{SESSIONS}/cs_1", json=envelope({**CREATED, "id": value}))
        with pytest.raises(UniPostResponseError, match="lacks id"):
            make_client().get_session("cs_1")


def test_get_answer_may_lack_the_url() -> None:
    data = {k: v for k, v in COMPLETED.items() if k != "url"}
    with responses.RequestsMock() as rsps:
        rsps.get(f"{SESSIONS}/cs_1", json=envelope(data))
        assert make_client().get_session("cs_1").url == ""


@pytest.mark.parametrize("data", [None, [], "pending", [CREATED]])
def test_data_that_is_not_an_object_is_refused(data: Any) -> None:
    with responses.RequestsMock() as rsps:
        rsps.get(f"{SESSIONS}/cs_1", json={"data": data, "request_id": "req_x"})
        with pytest.raises(UniPostResponseError):
            make_client().get_session("cs_1")


@pytest.mark.parametrize("url", NOT_HTTP_URLS)
def test_hosted_url_that_is_not_http_is_refused(url: str) -> None:
    with responses.RequestsMock() as rsps:
        rsps.post(SESSIONS, json=envelope({**CREATED, "url": url}), status=201)
        with pytest.raises(UniPostResponseError, match="not an http"):
            create(make_client())


@pytest.mark.parametrize("url", ["http://localhost:8000/connect/x?state=s", "HTTPS://APP.UNIPOST.DEV/c"])
def test_hosted_url_over_http_or_uppercase_is_accepted(url: str) -> None:
    with responses.RequestsMock() as rsps:
        rsps.post(SESSIONS, json=envelope({**CREATED, "url": url}), status=201)
        assert create(make_client()).url == url


# -- 2xx answers that cannot be used: the shared table's bad bodies -------------------------------

UNUSABLE_BODIES = [
    f for f in CREATE_FAULTS if f.body and f.status is None and f.code == "INVALID_RESPONSE" and not f.creates
]


@pytest.mark.parametrize("fault", UNUSABLE_BODIES, ids=fault_id)
def test_success_status_with_unusable_body(fault: Fault) -> None:
    assert fault.body is not None
    headers = {**fault.headers, "X-Request-Id": "req_hdr"}
    with responses.RequestsMock() as rsps:
        rsps.post(SESSIONS, body=fault.body(CREATED), status=201, headers=headers)
        with pytest.raises(UniPostResponseError) as info:
            create(make_client())
    assert info.value.status == 201
    assert info.value.request_id == "req_hdr"
    assert not info.value.is_retriable


# -- error answers ----------------------------------------------------------------------------------


ERROR_CASES = [
    (401, "UNAUTHORIZED", AuthenticationError),
    (402, "PLAN_PLATFORM_NOT_ALLOWED", PlanLimitError),
    (402, "PLAN_FEATURE_NOT_AVAILABLE", PlanLimitError),
    (404, "NOT_FOUND", NotFoundError),
    (422, "VALIDATION_ERROR", UniPostValidationError),
    (429, "RATE_LIMITED", RateLimitedError),
    (500, "INTERNAL_ERROR", ServerError),
]


@pytest.mark.parametrize(("status", "code", "cls"), ERROR_CASES)
def test_error_envelope_maps_to_its_class(status: int, code: str, cls: type[UniPostError]) -> None:
    body = error_body(code, f"message for {code}", "req_from_body", hint="do this")
    with responses.RequestsMock() as rsps:
        rsps.post(SESSIONS, json=body, status=status, headers={"X-Request-Id": "req_from_header"})
        with pytest.raises(cls) as info:
            create(make_client(max_retries=0))
    error = info.value
    assert isinstance(error, UniPostAPIError)
    assert error.status == status
    assert error.code == code
    assert error.normalized_code == code.lower()
    assert error.message == f"message for {code}"
    assert error.hint == "do this"
    assert error.request_id == "req_from_body"
    assert "req_from_body" in str(error) and code in str(error)


@pytest.mark.parametrize(("status", "code", "cls"), ERROR_CASES)
def test_error_request_id_falls_back_to_the_header(status: int, code: str, cls: type[UniPostError]) -> None:
    with responses.RequestsMock() as rsps:
        rsps.get(
            f"{SESSIONS}/cs_1",
            json=error_body(code, "m", None),
            status=status,
            headers={"X-Request-Id": "req_from_header"},
        )
        with pytest.raises(cls) as info:
            make_client(max_retries=0).get_session("cs_1")
    assert info.value.request_id == "req_from_header"


def test_error_with_empty_request_id_in_body_uses_the_header() -> None:
    with responses.RequestsMock() as rsps:
        rsps.get(
            f"{SESSIONS}/cs_1",
            json=error_body("NOT_FOUND", "m", ""),
            status=404,
            headers={"X-Request-Id": "req_h"},
        )
        with pytest.raises(NotFoundError) as info:
            make_client().get_session("cs_1")
    assert info.value.request_id == "req_h"


def test_error_without_normalized_code_derives_it() -> None:
    body = {"error": {"code": "VALIDATION_ERROR", "message": "bad platform"}}
    with responses.RequestsMock() as rsps:
        rsps.post(SESSIONS, json=body, status=422)
        with pytest.raises(UniPostValidationError) as info:
            create(make_client())
    assert info.value.normalized_code == "validation_error"


@pytest.mark.parametrize(("status", "code", "cls"), ERROR_CASES)
def test_fake_injected_errors_map_the_same_way(
    fake: FakeUniPost, status: int, code: str, cls: type[UniPostError]
) -> None:
    fake.fail_next("create", status, code=code, message="injected")
    with pytest.raises(cls) as info:
        create(make_client(max_retries=0))
    assert (info.value.status, info.value.code, info.value.message) == (status, code, "injected")
    assert info.value.request_id


def test_wrong_key_against_the_fake_is_an_authentication_error(fake: FakeUniPost) -> None:
    client = UniPostClient("up_test_wrong", BASE)
    with pytest.raises(AuthenticationError) as info:
        create(client)
    assert info.value.code == "UNAUTHORIZED"
    assert fake.sessions == {}


def test_unknown_session_is_not_found(fake: FakeUniPost) -> None:
    with pytest.raises(NotFoundError) as info:
        make_client().get_session("cs_nope")
    assert info.value.status == 404
    assert info.value.normalized_code == "not_found"


# What answers a 404 that UniPost's API did not write: the live server's router for an
# unknown route ("404 page not found", text/plain), a web server or proxy page, nothing.
ROUTE_404_BODIES = [
    pytest.param(b"404 page not found", "text/plain; charset=utf-8", id="router-text"),
    pytest.param(b"<html><body><h1>404 Not Found</h1></body></html>", "text/html", id="html"),
    pytest.param(b"", "text/plain", id="empty"),
    pytest.param(b'{"message": "Not Found"}', "application/json", id="json-without-envelope"),
]


@pytest.mark.parametrize(("body", "content_type"), ROUTE_404_BODIES)
def test_404_without_the_error_envelope_is_a_wrong_endpoint_not_a_missing_session(
    body: bytes, content_type: str
) -> None:
    with responses.RequestsMock() as rsps:
        rsps.get(
            f"{SESSIONS}/cs_1",
            body=body,
            status=404,
            content_type=content_type,
            headers={"X-Request-Id": "req_route"},
        )
        with pytest.raises(EndpointNotFoundError) as info:
            make_client(max_retries=2).get_session("cs_1")
        assert len(rsps.calls) == 1  # a configuration error: retrying cannot help
    error = info.value
    assert isinstance(error, UniPostError)
    assert not isinstance(error, NotFoundError)
    assert not error.is_retriable
    assert error.status == 404
    assert error.code == "ENDPOINT_NOT_FOUND"
    assert error.normalized_code == "endpoint_not_found"
    assert error.request_id == "req_route"
    # Tells the site owner what to fix, and where the client was looking.
    assert "UNIPOST_CONNECT['API_BASE_URL']" in error.message
    assert f"{SESSIONS}/cs_1" in error.message


def _plain_404(rsps: responses.RequestsMock, method: str, url: str) -> None:
    rsps.add(method, url, body="404 page not found", status=404, content_type="text/plain")


def test_every_endpoint_maps_a_plain_404_to_the_wrong_endpoint_error() -> None:
    client = make_client()
    with responses.RequestsMock() as rsps:
        _plain_404(rsps, responses.POST, SESSIONS)
        _plain_404(rsps, responses.GET, f"{BASE}/v1/accounts")
        _plain_404(rsps, responses.DELETE, f"{BASE}/v1/accounts/sa_1")
        with pytest.raises(EndpointNotFoundError):
            create(client)
        with pytest.raises(EndpointNotFoundError):
            client.list_accounts(external_user_id="42")
        with pytest.raises(EndpointNotFoundError):
            client.delete_account("sa_1")


def test_wrong_endpoint_message_leaves_out_the_query_string() -> None:
    with responses.RequestsMock() as rsps:
        _plain_404(rsps, responses.GET, f"{BASE}/v1/accounts")
        with pytest.raises(EndpointNotFoundError) as info:
            make_client().list_accounts(external_user_id="alex@example.com")
    # The end user's id is not the site owner's business in a configuration message.
    assert f"{BASE}/v1/accounts" in info.value.message
    assert "alex" not in info.value.message and "external_user_id" not in info.value.message


def test_json_not_found_envelope_stays_not_found() -> None:
    body = error_body("NOT_FOUND", "Connect session not found", None)
    with responses.RequestsMock() as rsps:
        rsps.get(f"{SESSIONS}/cs_1", json=body, status=404, headers={"X-Request-Id": "req_nf"})
        with pytest.raises(NotFoundError) as info:
            make_client().get_session("cs_1")
    assert not isinstance(info.value, EndpointNotFoundError)
    assert (info.value.code, info.value.request_id) == ("NOT_FOUND", "req_nf")


def test_authentication_layer_401_gets_its_request_id_from_the_header() -> None:
    # The live server's auth layer answers only {"error": {"code", "message"}}.
    request_id = "5f0c8a52-3a8e-4f43-9d0e-7b1c2a6e9f10"
    body = {"error": {"code": "UNAUTHORIZED", "message": "Missing or invalid API key"}}
    with responses.RequestsMock() as rsps:
        rsps.get(f"{SESSIONS}/cs_1", json=body, status=401, headers={"X-Request-Id": request_id})
        with pytest.raises(AuthenticationError) as info:
            make_client().get_session("cs_1")
    error = info.value
    assert (error.status, error.code, error.normalized_code) == (401, "UNAUTHORIZED", "unauthorized")
    assert error.request_id == request_id
    assert error.message == "Missing or invalid API key"
    assert request_id in str(error)


NON_JSON_BODIES = [
    (b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>", "text/html"),
    (b"", "text/plain"),
    (b'{"error": {"code": "INTERNAL_ER', "application/json"),
    (b'[{"error": "x"}]', "application/json"),
    (b'"Internal Server Error"', "application/json"),
    (b'{"error": "a string, not an object"}', "application/json"),
    (b"\xff\xfe\x00garbage\x80", "application/octet-stream"),
]


@pytest.mark.parametrize(
    ("body", "content_type"),
    NON_JSON_BODIES,
    ids=["html", "empty", "truncated", "list", "string", "error-string", "binary"],
)
@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_error_status_without_envelope(status: int, body: bytes, content_type: str) -> None:
    with responses.RequestsMock() as rsps:
        rsps.post(
            SESSIONS,
            body=body,
            status=status,
            content_type=content_type,
            headers={"X-Request-Id": "req_proxy"},
        )
        with pytest.raises(ServerError) as info:
            create(make_client())
    error = info.value
    assert error.status == status
    assert error.code == f"HTTP_{status}"
    assert error.normalized_code == f"http_{status}"
    assert error.request_id == "req_proxy"
    assert error.is_retriable
    assert str(status) in error.message


def test_non_json_4xx_keeps_its_class() -> None:
    with responses.RequestsMock() as rsps:
        rsps.get(f"{SESSIONS}/cs_1", body="<h1>Forbidden</h1>", status=403, content_type="text/html")
        with pytest.raises(AuthenticationError) as info:
            make_client().get_session("cs_1")
    assert info.value.code == "HTTP_403"
    assert info.value.request_id == ""


def test_redirects_are_not_followed() -> None:
    with responses.RequestsMock() as rsps:
        rsps.post(SESSIONS, status=302, headers={"Location": "https://elsewhere.test/steal"})
        with pytest.raises(UniPostAPIError) as info:
            create(make_client())
        assert len(rsps.calls) == 1
    assert info.value.status == 302


# -- headers, secrets, logging ---------------------------------------------------------------------


def test_sends_bearer_key_user_agent_and_accept(fake: FakeUniPost) -> None:
    with responses.RequestsMock() as rsps:
        rsps.get(f"{SESSIONS}/cs_1", json=envelope(CREATED))
        make_client().get_session("cs_1")
        headers = rsps.calls[0].request.headers
    assert headers["Authorization"] == f"Bearer {KEY}"
    assert headers["User-Agent"] == f"unipost-connect/{__version__}"
    assert headers["Accept"] == "application/json"


def test_create_sends_json_content_type() -> None:
    with responses.RequestsMock() as rsps:
        rsps.post(SESSIONS, json=envelope(CREATED), status=201)
        create(make_client())
        assert rsps.calls[0].request.headers["Content-Type"] == "application/json"


def test_timeouts_are_passed_to_every_request() -> None:
    with responses.RequestsMock() as rsps:
        rsps.get(f"{SESSIONS}/cs_1", json=envelope(CREATED))
        rsps.post(SESSIONS, json=envelope(CREATED), status=201)
        client = make_client(timeout=(1.5, 7.0))
        client.get_session("cs_1")
        create(client)
        # responses keeps the keyword arguments requests sent the adapter.
        timeouts = [getattr(call.request, "req_kwargs")["timeout"] for call in rsps.calls]  # noqa: B009
        assert timeouts == [(1.5, 7.0), (1.5, 7.0)]


def test_get_session_timeout_overrides_the_clients_for_that_call_only() -> None:
    with responses.RequestsMock() as rsps:
        rsps.get(f"{SESSIONS}/cs_1", json=envelope(CREATED))
        client = make_client(timeout=(1.5, 7.0))
        client.get_session("cs_1", timeout=(0.5, 1.0))
        client.get_session("cs_1")
        timeouts = [getattr(call.request, "req_kwargs")["timeout"] for call in rsps.calls]  # noqa: B009
    assert timeouts == [(0.5, 1.0), (1.5, 7.0)]
    assert client.timeout == (1.5, 7.0)


def test_get_session_timeout_applies_to_its_retries() -> None:
    with responses.RequestsMock() as rsps:
        rsps.get(f"{SESSIONS}/cs_1", status=503)
        rsps.get(f"{SESSIONS}/cs_1", json=envelope(CREATED))
        remote = make_client(timeout=(1.5, 7.0)).get_session("cs_1", timeout=(0.2, 0.4), max_retries=1)
        timeouts = [getattr(call.request, "req_kwargs")["timeout"] for call in rsps.calls]  # noqa: B009
    assert remote.id == CREATED["id"]
    assert timeouts == [(0.2, 0.4), (0.2, 0.4)]


def test_repr_hides_the_key() -> None:
    client = UniPostClient("up_live_supersecretvalue", BASE)
    assert "supersecret" not in repr(client)
    assert "up_live" not in repr(client)
    assert BASE in repr(client)


def test_remote_session_repr_hides_the_hosted_state() -> None:
    with responses.RequestsMock() as rsps:
        rsps.post(SESSIONS, json=envelope(CREATED), status=201)
        remote = create(make_client())
    assert "SECRETSTATE123" in remote.url
    assert "SECRETSTATE123" not in repr(remote)
    assert "SECRETSTATE123" not in str(remote)


def _logged_text(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(
        f"{r.name} {r.getMessage()} {r.args!r} {getattr(r, 'exc_text', '') or ''}" for r in caplog.records
    )


def test_key_and_state_never_logged(fake: FakeUniPost, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = UniPostClient("up_test_key", BASE, sleep=lambda s: None)
    remote = create(client)
    client.get_session(remote.id)
    fake.fail_next("get", 500, times=1)
    client.get_session(remote.id)
    fake.fail_next("get", exception=requests.ConnectionError("reset by peer"))
    client.get_session(remote.id)
    fake.fail_next("create", 422, code="VALIDATION_ERROR")
    with pytest.raises(UniPostValidationError):
        create(client)
    with pytest.raises(NotFoundError):
        client.get_session("cs_missing")
    state = fake.sessions[remote.id].state
    text = _logged_text(caplog)
    assert caplog.records, "the client logs its calls at DEBUG and failures at WARNING"
    assert "up_test_key" not in text
    assert "Bearer" not in text
    assert state not in text
    assert "state=" not in text


def test_key_not_logged_by_a_rejected_client(fake: FakeUniPost, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = UniPostClient("up_live_wrongkey123", BASE)
    with pytest.raises(AuthenticationError) as info:
        create(client)
    assert "up_live_wrongkey123" not in _logged_text(caplog)
    assert "up_live_wrongkey123" not in str(info.value)


def test_failures_are_logged_with_the_request_id(fake: FakeUniPost, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="unipost_connect.client")
    fake.fail_next("create", 402, code="PLAN_PLATFORM_NOT_ALLOWED")
    with pytest.raises(PlanLimitError) as info:
        create(make_client())
    assert info.value.request_id in caplog.text
    assert "PLAN_PLATFORM_NOT_ALLOWED" in caplog.text


# -- accounts --------------------------------------------------------------------------------------


def test_list_and_delete_accounts(fake: FakeUniPost) -> None:
    client = make_client()
    remote = create(client, external_user_id="7")
    fake.approve(remote.id, account_name="Example Co")
    accounts = client.list_accounts(external_user_id="7")
    assert [(a.id, a.platform, a.account_name, a.status, a.connection_type) for a in accounts] == [
        (fake.sessions[remote.id].managed_account_id, "linkedin", "Example Co", "active", "managed")
    ]
    assert client.list_accounts(external_user_id="someone-else") == []
    assert client.delete_account(accounts[0].id)  # the request id
    assert client.list_accounts(external_user_id="7") == []
    # A repeated DELETE answers 200 again (UniPost's backend): disconnecting is idempotent.
    assert client.delete_account(accounts[0].id)
    with pytest.raises(NotFoundError):
        client.delete_account("never-existed")


def test_delete_accepts_an_empty_answer() -> None:
    with responses.RequestsMock() as rsps:
        rsps.delete(f"{BASE}/v1/accounts/sa_1", status=204, headers={"X-Request-Id": "req_del"})
        assert make_client().delete_account("sa_1") == "req_del"


def test_delete_accepts_the_live_servers_answer() -> None:
    request_id = "0b7e3c1d-9a4f-4e26-8c5b-2f6d1e8a7b90"
    body = {"data": {"disconnected": True}, "request_id": request_id}
    with responses.RequestsMock() as rsps:
        rsps.delete(f"{BASE}/v1/accounts/sa_1", json=body, headers={"X-Request-Id": "req_hdr"})
        assert make_client().delete_account("sa_1") == request_id


def test_delete_answer_saying_not_disconnected_is_refused() -> None:
    # "Mark only what UniPost confirmed": an explicit false is no confirmation.
    with responses.RequestsMock() as rsps:
        rsps.delete(
            f"{BASE}/v1/accounts/sa_1", json={"data": {"disconnected": False}}, headers={"X-Request-Id": "r"}
        )
        with pytest.raises(UniPostResponseError) as info:
            make_client().delete_account("sa_1")
    assert info.value.status == 200
    assert info.value.request_id == "r"
    assert not info.value.is_retriable


def test_uuid_ids_are_used_as_given() -> None:
    session_id = "3d9f2b6e-1c4a-4f8e-9b2d-7a6c5e4f3b21"
    account_id = "8c1e4a7f-2b9d-4e6c-a3f5-1d7b9e2c4a68"
    data = {**COMPLETED, "id": session_id, "managed_account_id": account_id}
    data["completed_social_account_id"] = account_id
    with responses.RequestsMock() as rsps:
        rsps.get(f"{SESSIONS}/{session_id}", json=envelope(data, "a1b2c3d4-0000-4000-8000-000000000001"))
        rsps.delete(f"{BASE}/v1/accounts/{account_id}", json={"data": {"disconnected": True}})
        client = make_client()
        remote = client.get_session(session_id)
        client.delete_account(remote.managed_account_id)
    assert (remote.id, remote.managed_account_id) == (session_id, account_id)
    assert remote.request_id == "a1b2c3d4-0000-4000-8000-000000000001"


# -- get_client ------------------------------------------------------------------------------------


def test_get_client_is_one_pooled_client_per_configuration() -> None:
    first = get_client()
    assert get_client() is first
    assert first.api_key == "up_test_key"
    assert first.base_url == BASE
    assert isinstance(first.http, requests.Session)


def test_get_client_follows_override_settings() -> None:
    base = get_client()
    new = {
        "API_KEY": "up_test_other",
        "API_BASE_URL": "https://other.test/",
        "CONNECT_TIMEOUT": 1,
        "READ_TIMEOUT": 2,
        "MAX_RETRIES": 5,
        "RETRY_MAX_WAIT": 9,
    }
    with override_settings(UNIPOST_CONNECT=new):
        other = get_client()
        assert other is not base
        assert get_client() is other
        assert other.api_key == "up_test_other"
        assert other.base_url == "https://other.test"
        assert other.timeout == (1.0, 2.0)
        assert other.max_retries == 5
        assert other.retry_max_wait == 9.0
    assert get_client() is base


def test_get_client_uses_the_settings_key_on_the_wire(fake: FakeUniPost) -> None:
    with override_settings(UNIPOST_CONNECT={"API_KEY": "up_test_rotated", "API_BASE_URL": BASE}):
        with pytest.raises(AuthenticationError):
            create(get_client())
        fake.api_key = "up_test_rotated"
        assert create(get_client()).status == "pending"


@responses.activate
def test_a_request_id_with_control_characters_is_not_taken() -> None:
    responses.get(
        "https://api.unipost.test/v1/connect/sessions/s-1",
        json={"error": {"code": "NOT_FOUND", "message": "no"}, "request_id": "r-1\nFAKE LOG LINE"},
        status=404,
        headers={"X-Request-Id": "r-header"},
    )
    with pytest.raises(NotFoundError) as raised:
        UniPostClient("up_test_k", "https://api.unipost.test").get_session("s-1")
    assert raised.value.request_id == "r-header"
