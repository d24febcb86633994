"""The JSON API: starting a session, its status, the accounts, disconnecting; who may call
it and how. Every answer here is also checked against the OpenAPI document
(``tests/api_client.py``); UniPost's failures are in ``test_api_faults.py``."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.test import Client, override_settings
from django.test.client import MULTIPART_CONTENT
from django.utils import timezone

from tests.api_client import (
    ACCOUNT,
    ACCOUNTS,
    ENDPOINTS,
    SCHEMA,
    SESSION,
    SESSIONS,
    WRITES,
    Api,
    error_of,
    iso,
    url,
)
from tests.faults import HOSTED, approved, remote_session
from unipost_connect import api as api_module
from unipost_connect import openapi, services
from unipost_connect import start as start_module
from unipost_connect.models import ConnectedAccount, ConnectSession
from unipost_connect.testing import FakeUniPost

pytestmark = pytest.mark.django_db

RELOAD = "The request could not be understood. Please reload the page and try again."
NOT_FOUND = "This was not found. Please reload the page and try again."
CSRF_FAILED = "Your session has expired or this page is out of date. Please reload the page and try again."
LOG_IN = "Please log in, then try again."


@pytest.fixture
def api(user_client: Client) -> Api:
    """The logged-in user, CSRF not enforced (as Django's test client does by default)."""
    return Api(user_client)


@pytest.fixture
def anonymous(fake: FakeUniPost) -> Api:
    return Api(Client(enforce_csrf_checks=True))


def csrf_token(client: Client) -> str:
    """The token a page gets: any GET of the API sets the cookie."""
    client.get(url(ACCOUNTS))
    return client.cookies[settings.CSRF_COOKIE_NAME].value


@pytest.fixture
def csrf_api(csrf_client: Client) -> Api:
    """The logged-in user, CSRF enforced, sending the right token in X-CSRFToken."""
    return Api(csrf_client, csrf_token(csrf_client))


def make_account(user: Any, platform: str = "linkedin", n: int = 1, **kw: Any) -> ConnectedAccount:
    return ConnectedAccount.objects.create(
        user=user,
        platform=platform,
        managed_account_id=f"sa_{platform}_{user.pk}_{n}",
        external_user_id=kw.pop("external_user_id", str(user.pk)),
        account_name=kw.pop("account_name", f"{platform} account {n}"),
        **kw,
    )


def kwargs_for(name: str, user: Any) -> dict[str, Any]:
    """Path kwargs naming one of ``user``'s objects for the endpoint ``name``."""
    if name == SESSION:
        return {"session_id": ConnectSession.objects.create(user=user, platform="linkedin").pk}
    if name == ACCOUNT:
        return {"account_id": make_account(user).pk}
    return {}


def started(api: Api, platform: str = "linkedin", **fields: Any) -> ConnectSession:
    answer = api.start({"platform": platform, **fields})
    assert answer.status_code == 201, answer.content
    return ConnectSession.objects.get(pk=answer.json()["id"])


# -- who may call, and how ------------------------------------------------------------------------


def test_the_urls() -> None:
    assert url(SESSIONS) == "/unipost/api/sessions/"
    assert url(ACCOUNTS) == "/unipost/api/accounts/"
    assert url(ACCOUNT, account_id=7) == "/unipost/api/accounts/7/"
    assert url(SCHEMA) == "/unipost/api/schema/"


@pytest.mark.parametrize("name", list(ENDPOINTS))
def test_anonymous_callers_get_401_json_never_a_login_redirect(
    name: str, anonymous: Api, fake: FakeUniPost, user: Any
) -> None:
    answer = anonymous.call(ENDPOINTS[name], name, **kwargs_for(name, user))
    assert error_of(answer) == (401, "not_authenticated", LOG_IN)
    assert answer["Content-Type"] == "application/json"
    assert fake.requests == []


def test_an_anonymous_write_is_401_before_any_csrf_check(anonymous: Api) -> None:
    # No token and no session: "log in" says what to do; nothing could be done anyway.
    assert error_of(anonymous.start())[:2] == (401, "not_authenticated")


OTHER_METHODS = [
    (name, method)
    for name in ENDPOINTS
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
    if method != ENDPOINTS[name]
]


@pytest.mark.parametrize(("name", "method"), OTHER_METHODS)
def test_other_methods_are_405_json_with_allow(
    name: str, method: str, api: Api, fake: FakeUniPost, user: Any
) -> None:
    answer = api.call(method, name, **kwargs_for(name, user))
    assert error_of(answer) == (405, "method_not_allowed", "This request is not supported here.")
    assert answer["Allow"] == ENDPOINTS[name]
    assert fake.requests == []


def test_a_head_request_is_405_too(api: Api) -> None:
    answer = api.call("HEAD", ACCOUNTS, check=False)
    assert answer.status_code == 405
    assert answer["Allow"] == "GET"


def test_405_comes_before_401(anonymous: Api) -> None:
    assert anonymous.call("GET", SESSIONS).status_code == 405


@pytest.mark.parametrize("name", WRITES)
def test_a_write_without_the_csrf_token_is_403_json(
    name: str, csrf_client: Client, fake: FakeUniPost, user: Any, caplog: pytest.LogCaptureFixture
) -> None:
    kwargs = kwargs_for(name, user)
    csrf_token(csrf_client)  # the cookie is there; the header is not
    with caplog.at_level(logging.WARNING, logger="django.security.csrf"):
        answer = Api(csrf_client).call(ENDPOINTS[name], name, {"platform": "linkedin"}, **kwargs)
    assert error_of(answer) == (403, "csrf_failed", CSRF_FAILED)
    assert "CSRF token missing" in caplog.text  # Django's reason, for the operators
    assert fake.requests == []
    assert ConnectedAccount.objects.filter(status="disconnected").count() == 0
    assert ConnectSession.objects.exclude(unipost_session_id=None).count() == 0


@pytest.mark.parametrize("name", WRITES)
@pytest.mark.parametrize(
    "token", ["wrong", "x" * 32, "x" * 64, ""], ids=["short", "32-wrong", "64-wrong", "empty"]
)
def test_a_write_with_a_wrong_csrf_token_is_403_json(
    name: str, token: str, csrf_client: Client, fake: FakeUniPost, user: Any
) -> None:
    kwargs = kwargs_for(name, user)
    csrf_token(csrf_client)
    answer = Api(csrf_client, token).call(ENDPOINTS[name], name, {"platform": "linkedin"}, **kwargs)
    assert error_of(answer)[:2] == (403, "csrf_failed")
    assert fake.requests == []


def test_a_write_without_the_csrf_cookie_is_403_json(csrf_client: Client, fake: FakeUniPost) -> None:
    answer = Api(csrf_client, "x" * 32).start()
    assert error_of(answer)[:2] == (403, "csrf_failed")


def test_the_right_token_in_the_header_is_accepted(csrf_api: Api, fake: FakeUniPost, user: Any) -> None:
    assert csrf_api.start().status_code == 201
    account = make_account(user)
    assert csrf_api.disconnect(account.pk).status_code == 204


def test_the_token_in_a_form_field_is_accepted_as_django_does(csrf_client: Client, fake: FakeUniPost) -> None:
    token = csrf_token(csrf_client)
    answer = Api(csrf_client).start(
        {"platform": "linkedin", "csrfmiddlewaretoken": token},
        content_type="application/x-www-form-urlencoded",
    )
    assert answer.status_code == 201


def test_over_https_a_cross_site_referer_is_refused(csrf_client: Client, fake: FakeUniPost) -> None:
    token = csrf_token(csrf_client)
    # Django's own Referer check on HTTPS, answered as JSON.
    answer = Api(csrf_client, token).start(secure=True, headers={"Referer": "https://evil.example/"})
    assert error_of(answer)[:2] == (403, "csrf_failed")
    same_site = Api(csrf_client, token).start(secure=True, headers={"Referer": "https://testserver/page/"})
    assert same_site.status_code == 201


def test_a_cross_origin_write_is_refused(csrf_client: Client, fake: FakeUniPost) -> None:
    token = csrf_token(csrf_client)
    answer = Api(csrf_client, token).start(headers={"Origin": "https://evil.example"})
    assert error_of(answer)[:2] == (403, "csrf_failed")


def test_reads_need_no_token_and_give_the_cookie(csrf_client: Client) -> None:
    answer = Api(csrf_client).accounts()
    assert answer.status_code == 200
    assert settings.CSRF_COOKIE_NAME in answer.cookies
    # Once there, it is not sent again with every poll.
    assert settings.CSRF_COOKIE_NAME not in Api(csrf_client).accounts().cookies


@override_settings(CSRF_USE_SESSIONS=True)
def test_a_token_kept_in_the_session_works_too(csrf_client: Client, fake: FakeUniPost) -> None:
    from django.middleware.csrf import CSRF_SESSION_KEY

    assert Api(csrf_client, "x" * 32).start().status_code == 403
    csrf_client.get(url(ACCOUNTS))  # the token is made and kept in the session, not a cookie
    assert settings.CSRF_COOKIE_NAME not in csrf_client.cookies
    token = csrf_client.session[CSRF_SESSION_KEY]
    assert Api(csrf_client, token).start().status_code == 201


@pytest.mark.parametrize("name", list(ENDPOINTS))
def test_every_answer_is_no_store(name: str, api: Api, fake: FakeUniPost, user: Any) -> None:
    answer = api.call(ENDPOINTS[name], name, {"platform": "linkedin"}, **kwargs_for(name, user))
    assert answer.status_code < 300
    assert "no-store" in answer["Cache-Control"]
    assert "private" in answer["Cache-Control"]


# -- bodies ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(ENDPOINTS))
def test_a_body_over_the_limit_is_413(name: str, api: Api, fake: FakeUniPost, user: Any) -> None:
    kwargs = kwargs_for(name, user)
    body = json.dumps({"platform": "linkedin", "pad": "x" * api_module.MAX_BODY_BYTES})
    answer = api.call(ENDPOINTS[name], name, raw=body, **kwargs)
    assert error_of(answer) == (413, "payload_too_large", "The request is too large.")
    assert fake.requests == []
    assert ConnectSession.objects.exclude(unipost_session_id=None).count() == 0


def test_a_body_of_exactly_the_limit_is_read(api: Api, fake: FakeUniPost) -> None:
    body = json.dumps({"platform": "linkedin"})
    body += " " * (api_module.MAX_BODY_BYTES - len(body))
    assert api.start(raw=body).status_code == 201


def test_a_body_larger_than_its_declared_length_is_413(rf: Any, user: Any, fake: FakeUniPost) -> None:
    # A server that hands over more than Content-Length says (none should) is caught on read.
    request = rf.post(url(SESSIONS), "{}", content_type="application/json")
    request.user = user
    request._dont_enforce_csrf_checks = True
    request._body = b" " * (api_module.MAX_BODY_BYTES + 1)
    answer = api_module.sessions(request)
    assert error_of(answer)[:2] == (413, "payload_too_large")


def test_an_unreadable_content_length_is_400(api: Api) -> None:
    # check=False: openapi-core's request adapter cannot read such a request's body either.
    answer = api.call("POST", SESSIONS, raw="{}", environ={"CONTENT_LENGTH": "ten"}, check=False)
    assert error_of(answer) == (400, "invalid_request", RELOAD)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"platform": "linkedin"',
        b"",
        b"[]",
        b'["linkedin"]',
        b'"linkedin"',
        b"null",
        b"42",
        b"\xff\xfe\x00garbage",
        b"[" * 5000 + b"]" * 5000,
        b'{"platform": NaN',
    ],
    ids=["truncated", "empty", "list", "list-of-str", "string", "null", "number", "binary", "deep", "nan"],
)
def test_a_body_that_is_not_a_json_object_is_400(raw: bytes, api: Api, fake: FakeUniPost) -> None:
    answer = api.start(raw=raw)
    assert error_of(answer) == (400, "invalid_json", RELOAD)
    assert ConnectSession.objects.count() == 0
    assert fake.requests == []


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"platform": None},
        {"platform": 7},
        {"platform": ["linkedin"]},
        {"platform": {"name": "linkedin"}},
        {"platform": "linkedin", "next": 5},
        {"platform": "linkedin", "popup": "maybe"},
        {"platform": "linkedin", "popup": 1},
    ],
)
def test_fields_of_the_wrong_type_are_400(body: dict[str, Any], api: Api, fake: FakeUniPost) -> None:
    answer = api.start(body)
    assert error_of(answer) == (400, "invalid_request", RELOAD)
    assert ConnectSession.objects.count() == 0
    assert fake.requests == []


def test_other_content_types_are_415(api: Api, fake: FakeUniPost) -> None:
    answer = api.start(raw="platform=linkedin", content_type="text/plain")
    assert error_of(answer) == (415, "unsupported_media_type", RELOAD)
    assert fake.requests == []


def test_a_json_suffix_type_is_json(api: Api, fake: FakeUniPost) -> None:
    assert (
        api.start(raw='{"platform": "linkedin"}', content_type="application/vnd.site+json").status_code == 201
    )


def test_an_empty_body_without_a_type_is_a_missing_platform(api: Api, fake: FakeUniPost) -> None:
    answer = api.call("POST", SESSIONS, raw="", content_type="")
    assert error_of(answer)[:2] == (400, "invalid_request")


def test_a_form_body_starts_a_session(api: Api, fake: FakeUniPost) -> None:
    answer = api.start(
        {"platform": "bluesky", "next": "/settings/", "popup": "1"},
        content_type="application/x-www-form-urlencoded",
    )
    assert answer.status_code == 201
    session = ConnectSession.objects.get()
    assert (session.platform, session.next_url, session.popup) == ("bluesky", "/settings/", True)


def test_a_multipart_body_starts_a_session(api: Api, fake: FakeUniPost) -> None:
    # What fetch sends for a FormData body.
    answer = api.start({"platform": "linkedin", "popup": "false"}, content_type=MULTIPART_CONTENT)
    assert answer.status_code == 201
    assert ConnectSession.objects.get().popup is False


def test_a_broken_multipart_body_is_400(api: Api, fake: FakeUniPost) -> None:
    answer = api.start(raw="--nope\r\n", content_type="multipart/form-data")
    assert error_of(answer)[:2] == (400, "invalid_request")


def test_too_many_form_fields_is_400(api: Api, fake: FakeUniPost) -> None:
    with override_settings(DATA_UPLOAD_MAX_NUMBER_FIELDS=3):
        answer = api.start(
            raw="platform=linkedin&a=1&b=2&c=3", content_type="application/x-www-form-urlencoded"
        )
    assert error_of(answer)[:2] == (400, "invalid_request")


@pytest.mark.parametrize(
    ("value", "popup"), [("on", True), ("true", True), ("", False), ("0", False), ("no", False)]
)
def test_form_popup_values(value: str, popup: bool, api: Api, fake: FakeUniPost) -> None:
    api.start({"platform": "linkedin", "popup": value}, content_type="application/x-www-form-urlencoded")
    assert ConnectSession.objects.get().popup is popup


def test_null_is_taken_as_absent(api: Api, fake: FakeUniPost) -> None:
    assert api.start({"platform": "linkedin", "next": None, "popup": None}).status_code == 201
    assert (ConnectSession.objects.get().next_url, ConnectSession.objects.get().popup) == ("", False)


def test_unknown_fields_are_ignored(api: Api, fake: FakeUniPost) -> None:
    assert api.start({"platform": "linkedin", "colour": "blue"}).status_code == 201


# -- api-sessions: start -------------------------------------------------------------------------


def test_start_answers_201_with_the_session(api: Api, fake: FakeUniPost, user: Any) -> None:
    answer = api.start({"platform": "linkedin", "popup": True, "next": "/settings/"})
    assert answer.status_code == 201
    session = ConnectSession.objects.get()
    body = answer.json()
    assert body == {
        "id": str(session.pk),
        "platform": "linkedin",
        "status": "pending",
        "url": session.url,
        "expires_at": iso(session.expires_at),
    }
    assert body["url"].startswith("https://app.unipost.test/connect/linkedin?")
    assert answer["Location"] == url(SESSION, session_id=session.pk)
    assert session.user == user
    assert session.popup is True
    assert session.next_url == "/settings/"
    assert session.unipost_session_id in fake.sessions
    # The return URL names the local session, as the HTML start's does.
    assert fake.sessions[session.unipost_session_id].return_url == (
        "http://testserver" + f"/unipost/return/{session.pk}/"
    )


def test_start_normalises_the_platform(api: Api, fake: FakeUniPost) -> None:
    assert api.start({"platform": "  LinkedIn "}).json()["platform"] == "linkedin"


@pytest.mark.parametrize("next_url", ["https://evil.example/", "//evil.example", "javascript:alert(1)"])
def test_start_drops_an_unsafe_next(next_url: str, api: Api, fake: FakeUniPost) -> None:
    assert api.start({"platform": "linkedin", "next": next_url}).status_code == 201
    assert ConnectSession.objects.get().next_url == ""


def test_start_without_popup_is_not_a_popup(api: Api, fake: FakeUniPost) -> None:
    started(api)
    assert ConnectSession.objects.get().popup is False


def test_a_second_start_reuses_the_pending_session_with_the_latest_options(
    api: Api, fake: FakeUniPost
) -> None:
    first = api.start({"platform": "linkedin"}).json()
    second = api.start({"platform": "linkedin", "popup": True, "next": "/b/"}).json()
    assert first == second
    session = ConnectSession.objects.get()
    assert (session.popup, session.next_url) == (True, "/b/")
    assert sum(1 for call in fake.requests if call == ("POST", "/v1/connect/sessions")) == 1


@pytest.mark.parametrize("platform", ["myspace", "", "LINKEDIN2", "../admin", "linkedin\x00"])
def test_an_unknown_platform_is_400(platform: str, api: Api, fake: FakeUniPost) -> None:
    answer = api.start({"platform": platform})
    assert error_of(answer) == (400, "unknown_platform", "That platform cannot be connected here.")
    assert ConnectSession.objects.count() == 0
    assert fake.requests == []


def test_a_platform_outside_the_configured_subset_is_400(api: Api, fake: FakeUniPost) -> None:
    with override_settings(UNIPOST_CONNECT={**settings.UNIPOST_CONNECT, "PLATFORMS": ["bluesky"]}):
        assert error_of(api.start({"platform": "linkedin"}))[:2] == (400, "unknown_platform")
        assert api.start({"platform": "bluesky"}).status_code == 201


def test_a_start_still_in_progress_elsewhere_is_409(
    api: Api, fake: FakeUniPost, user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(start_module, "START_WAIT", 0.05)
    # Another request holds the start: its row has no UniPost id yet.
    ConnectSession.objects.create(user=user, platform="linkedin", external_user_id=str(user.pk))
    answer = api.start({"platform": "linkedin"})
    assert error_of(answer) == (
        409,
        "start_in_progress",
        "Your LinkedIn connection is already being started in another tab or window. "
        "Please wait a moment and try again.",
    )
    assert fake.requests == []


def test_a_stored_unusable_hosted_url_is_not_handed_out(api: Api, fake: FakeUniPost) -> None:
    started(api)
    ConnectSession.objects.update(url="javascript:alert(1)")
    answer = api.start()
    status, code, _ = error_of(answer)
    assert (status, code) == (502, "unipost_error")
    assert "javascript" not in answer.content.decode()


# -- api-session: status ----------------------------------------------------------------------------


def test_a_pending_session_is_reconciled_and_reports_its_account(
    api: Api, fake: FakeUniPost, user: Any
) -> None:
    session = started(api)
    assert api.session(session.pk).json()["status"] == "pending"
    fake.approve(session.unipost_session_id)

    body = api.session(session.pk).json()

    account = ConnectedAccount.objects.get()
    assert body == {
        "id": str(session.pk),
        "platform": "linkedin",
        "status": "completed",
        "managed_account_id": account.managed_account_id,
        "account": {
            "id": account.pk,
            "platform": "linkedin",
            "account_name": "",  # the session's read names no account; the webhook does
            "status": "active",
            "managed_account_id": account.managed_account_id,
            "connected_at": iso(account.connected_at),
        },
        "error": None,
        "expires_at": body["expires_at"],
    }
    assert body["account"] == api.accounts().json()["accounts"][0]
    session.refresh_from_db()
    assert session.status == "completed"


def test_a_pending_session_reports_pending(api: Api, fake: FakeUniPost) -> None:
    session = started(api)
    body = api.session(session.pk).json()
    assert (body["status"], body["account"], body["error"], body["managed_account_id"]) == (
        "pending",
        None,
        None,
        None,
    )


def test_a_finished_session_is_not_asked_about_again(api: Api, fake: FakeUniPost) -> None:
    session = started(api)
    fake.approve(session.unipost_session_id)
    api.session(session.pk)
    asked = len(fake.requests)
    assert api.session(session.pk).json()["status"] == "completed"
    assert len(fake.requests) == asked


def test_a_denied_session_is_cancelled(api: Api, fake: FakeUniPost) -> None:
    session = started(api)
    fake.deny(session.unipost_session_id)
    body = api.session(session.pk).json()
    assert (body["status"], body["account"], body["error"]) == ("cancelled", None, None)


def test_an_overdue_session_is_expired(api: Api, fake: FakeUniPost) -> None:
    session = started(api)
    fake.advance(minutes=31)
    assert api.session(session.pk).json()["status"] == "expired"


@pytest.mark.parametrize(
    ("status", "reason", "code", "message"),
    [
        (
            "error",
            "token_exchange_failed",
            "hosted_page_error",
            "LinkedIn reported a problem while connecting, so nothing was connected. You can try again.",
        ),
        (
            "cancelled",
            "access_denied",
            "access_denied",
            "You declined the authorization, so no LinkedIn account was connected.",
        ),
    ],
)
def test_a_pending_session_the_hosted_page_reported_a_problem_for(
    status: str, reason: str, code: str, message: str, api: Api, fake: FakeUniPost
) -> None:
    session = started(api)
    fake.error(session.unipost_session_id)  # UniPost keeps it pending
    # What the browser's way back said (the return view records it).
    ConnectSession.objects.filter(pk=session.pk).update(return_status=status, return_reason=reason)
    body = api.session(session.pk).json()
    assert body["status"] == "pending"
    assert body["error"] == {"code": code, "message": message}


def test_a_failed_start_reports_why(api: Api, fake: FakeUniPost) -> None:
    fake.plan_platforms.discard("twitter")
    assert api.start({"platform": "twitter"}).status_code == 402
    session = ConnectSession.objects.get()
    body = api.session(session.pk).json()
    assert body["status"] == "failed"
    assert body["error"] == {
        "code": "plan_platform_not_allowed",
        "message": "Connecting X (Twitter) accounts is not included in this site's plan. "
        "Please contact the site's support.",
    }
    assert (body["account"], body["managed_account_id"]) == (None, None)


def test_an_account_of_another_user_is_not_shown(
    api: Api, fake: FakeUniPost, user: Any, other_user: Any
) -> None:
    session = remote_session(user, minutes_ago=1)
    remote = approved(fake, session)
    # The same UniPost account already belongs to another user here.
    ConnectedAccount.objects.create(
        user=other_user, platform="linkedin", managed_account_id=remote["managed_account_id"]
    )
    body = api.session(session.pk).json()
    assert body["status"] == "completed"
    assert (body["account"], body["managed_account_id"]) == (None, None)
    assert body["error"] == {
        "code": "account_conflict",
        "message": "This LinkedIn account is already connected to another user of this site, so it was "
        "not added to yours. Please contact the site's support.",
    }


def test_another_users_session_is_404_and_unipost_is_not_asked(
    fake: FakeUniPost, other_user: Any, user: Any
) -> None:
    session = remote_session(user, minutes_ago=1)
    asked = len(fake.requests)
    intruder = Client()
    intruder.force_login(other_user)
    answer = Api(intruder).session(session.pk)
    assert error_of(answer) == (404, "not_found", NOT_FOUND)
    assert len(fake.requests) == asked


def test_an_unknown_session_is_404(api: Api) -> None:
    assert error_of(api.session("00000000-0000-4000-8000-000000000000"))[:2] == (404, "not_found")


def test_a_session_still_starting_is_reported_without_asking_unipost(
    api: Api, fake: FakeUniPost, user: Any
) -> None:
    session = ConnectSession.objects.create(user=user, platform="linkedin", external_user_id=str(user.pk))
    body = api.session(session.pk).json()
    assert (body["status"], body["expires_at"]) == ("pending", None)
    assert fake.requests == []


# -- api-accounts -----------------------------------------------------------------------------------


def test_no_accounts(api: Api) -> None:
    assert api.accounts().json() == {"accounts": []}


def test_accounts_lists_the_users_accounts_as_the_connections_page_does(
    api: Api, user: Any, other_user: Any
) -> None:
    old = make_account(user, "linkedin", 1, connected_at=timezone.now() - timedelta(days=2))
    new = make_account(user, "linkedin", 2, status=ConnectedAccount.Status.RECONNECT_REQUIRED)
    gone = make_account(user, "bluesky", 3, status=ConnectedAccount.Status.DISCONNECTED, account_name="")
    make_account(other_user, "linkedin", 4)

    listed = api.accounts().json()["accounts"]

    assert [a["id"] for a in listed] == [gone.pk, new.pk, old.pk]
    assert listed[0] == {
        "id": gone.pk,
        "platform": "bluesky",
        "account_name": "",
        "status": "disconnected",
        "managed_account_id": gone.managed_account_id,
        "connected_at": iso(gone.connected_at),
    }
    assert listed[1]["status"] == "reconnect_required"


def test_an_anonymous_user_has_no_accounts(user: Any) -> None:
    from django.contrib.auth.models import AnonymousUser

    make_account(user)
    assert list(services.user_accounts(AnonymousUser())) == []


# -- api-account: disconnect ------------------------------------------------------------------------


def connected(api: Api, fake: FakeUniPost) -> ConnectedAccount:
    session = started(api)
    fake.approve(session.unipost_session_id)
    api.session(session.pk)
    return ConnectedAccount.objects.get()


def test_disconnect_answers_204_and_marks_the_account(api: Api, fake: FakeUniPost) -> None:
    account = connected(api, fake)
    answer = api.disconnect(account.pk)
    assert answer.status_code == 204
    assert answer.content == b""
    assert "Content-Type" not in answer
    account.refresh_from_db()
    assert account.status == ConnectedAccount.Status.DISCONNECTED
    assert fake.accounts[account.managed_account_id].status == "disconnected"
    assert api.accounts().json()["accounts"][0]["status"] == "disconnected"


def test_disconnect_of_an_account_unipost_no_longer_has(api: Api, fake: FakeUniPost, user: Any) -> None:
    account = make_account(user)  # unknown to the fake: a 404 there, the state asked for
    assert api.disconnect(account.pk).status_code == 204
    account.refresh_from_db()
    assert account.status == ConnectedAccount.Status.DISCONNECTED


def test_disconnect_twice_is_204_twice(api: Api, fake: FakeUniPost) -> None:
    account = connected(api, fake)
    assert api.disconnect(account.pk).status_code == 204
    assert api.disconnect(account.pk).status_code == 204


def test_disconnect_another_users_account_is_404(fake: FakeUniPost, other_user: Any, user: Any) -> None:
    account = make_account(user)
    intruder = Client()
    intruder.force_login(other_user)
    assert error_of(Api(intruder).disconnect(account.pk)) == (404, "not_found", NOT_FOUND)
    account.refresh_from_db()
    assert account.status == ConnectedAccount.Status.ACTIVE
    assert fake.requests == []


def test_disconnect_an_unknown_account_is_404(api: Api, fake: FakeUniPost) -> None:
    assert error_of(api.disconnect(999999))[:2] == (404, "not_found")


# -- api-schema ---------------------------------------------------------------------------------------


def test_the_schema_endpoint_serves_the_document(api: Api) -> None:
    answer = api.schema()
    assert answer.status_code == 200
    assert answer.json() == json.loads(json.dumps(openapi.document()))


# -- never a 500 ------------------------------------------------------------------------------------


def test_an_unexpected_error_is_a_503_logged_with_its_traceback(
    api: Api, fake: FakeUniPost, user: Any, caplog: pytest.LogCaptureFixture
) -> None:
    session = started(api)
    fake.fail_next("get", exception=RuntimeError("a bug somewhere below"))
    with caplog.at_level(logging.ERROR, logger="unipost_connect"):
        answer = api.session(session.pk)
    assert error_of(answer) == (
        503,
        "unavailable",
        "Something went wrong on this site. Please try again in a few minutes.",
    )
    assert "Retry-After" not in answer
    assert "a bug somewhere below" not in answer.content.decode()
    logged = [r for r in caplog.records if r.name == "unipost_connect" and r.exc_info]
    assert len(logged) == 1
    assert "a bug somewhere below" in caplog.text
    assert "up_test_key" not in caplog.text


def test_an_unexpected_error_while_starting_keeps_the_row(api: Api, fake: FakeUniPost, user: Any) -> None:
    fake.fail_next("create", exception=RuntimeError("a bug somewhere below"))
    answer = api.start()
    assert error_of(answer)[:2] == (503, "unavailable")
    row = ConnectSession.objects.get()
    assert (row.status, row.error_code) == ("failed", "INTERNAL_ERROR")
    assert api.session(row.pk).json()["error"]["code"] == "unipost_error"


def test_a_site_setting_that_raises_is_a_503(api: Api, fake: FakeUniPost) -> None:
    def broken(user: Any) -> str:
        raise KeyError("no such profile")

    with override_settings(UNIPOST_CONNECT={**settings.UNIPOST_CONNECT, "EXTERNAL_USER_ID": broken}):
        assert error_of(api.start())[:2] == (503, "unavailable")
    assert fake.requests == []


@pytest.mark.django_db(transaction=True)
def test_under_atomic_requests_the_start_keeps_its_failed_row(
    api: Api, fake: FakeUniPost, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.db import connection

    monkeypatch.setitem(connection.settings_dict, "ATOMIC_REQUESTS", True)
    fake.fail_next("create", exception=RuntimeError("a bug somewhere below"))
    assert api.start().status_code == 503
    # The start runs in autocommit (as the HTML start does): its record of the failure stays.
    assert ConnectSession.objects.get().error_code == "INTERNAL_ERROR"


def test_under_atomic_requests_an_unexpected_error_rolls_the_request_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from django.db import connection, transaction

    monkeypatch.setitem(connection.settings_dict, "ATOMIC_REQUESTS", True)
    with transaction.atomic():  # as the handler wraps an atomic view
        api_module._roll_back_request_transaction(view_is_atomic=True)
        assert transaction.get_rollback()
        transaction.set_rollback(False)
    with transaction.atomic():
        api_module._roll_back_request_transaction(view_is_atomic=False)
        assert not transaction.get_rollback()


def test_without_atomic_requests_nothing_is_rolled_back() -> None:
    from django.db import transaction

    with transaction.atomic():  # the test's own transaction, say
        api_module._roll_back_request_transaction(view_is_atomic=True)
        assert not transaction.get_rollback()


def test_the_hosted_url_and_key_never_show_in_error_answers_or_logs(
    api: Api, fake: FakeUniPost, user: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bodies = []
    session = started(api)
    fake.fail_next("get", 500, times=10)
    bodies.append(api.session(session.pk).content)
    ConnectSession.objects.update(url=HOSTED + "\n")
    bodies.append(api.start().content)
    with override_settings(UNIPOST_CONNECT={**settings.UNIPOST_CONNECT, "API_KEY": "up_test_other_key"}):
        bodies.append(api.start({"platform": "tiktok"}).content)
    fake.fail_next("delete", 500, times=10)
    bodies.append(api.disconnect(make_account(user).pk).content)
    state = fake.sessions[session.unipost_session_id].state
    logged = caplog.text + "".join(repr(r.args) for r in caplog.records)
    for secret in ("up_test_key", "up_test_other_key", state, "s3cret"):
        assert secret not in logged
        for body in bodies:
            assert secret.encode() not in body


@pytest.mark.parametrize(
    "path", ["/unipost/api/sessions/not-a-uuid/", "/unipost/api/accounts/12x/", "/unipost/api/nothing"]
)
@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_any_other_path_under_the_api_is_a_json_404(user_client: Client, path: str, method: str) -> None:
    answer = user_client.generic(method, path)
    assert answer.status_code == 404
    assert answer["Content-Type"] == "application/json"
    assert answer.json()["error"]["code"] == "not_found"
    assert "no-store" in answer["Cache-Control"]
