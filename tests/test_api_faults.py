"""The JSON API against every UniPost fault of the shared table (``tests/faults.py``):
the start (create), the status (read) and the disconnect (delete). Each answer is the
error shape with the status a site owner expects, our words, no 500; the session row
keeps the error code, message and request id."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tests.api_client import Api, error_of
from tests.faults import (
    CREATE_FAULTS,
    FAULTS,
    HOSTED,
    RAW_TEXT,
    Fault,
    approved,
    assert_error_kept,
    calls_to,
    client_sleeps,
    create_answer,
    fault_id,
    remote_session,
)
from unipost_connect.models import ConnectedAccount, ConnectSession
from unipost_connect.testing import FakeUniPost

pytestmark = pytest.mark.django_db

READ_FAULTS = [f for f in FAULTS if f.read is not None]
# A delete's answer body is not read for anything: the faults of a body do not apply.
DELETE_FAULTS = [f for f in FAULTS if f.status is not None or f.exception is not None]


def answered(fault: Fault) -> tuple[int, str, str | None]:
    """(status, code, Retry-After) the API answers for ``fault``, from what it means."""
    if fault.code in ("TIMEOUT", "CONNECTION_ERROR"):
        return 503, "unipost_unreachable", "30"  # no hint from UniPost: ours
    if fault.status == 401:
        return 503, "misconfigured", None  # the site's key, not the caller's login
    if fault.status == 402:
        assert fault.envelope_code is not None
        return 402, fault.envelope_code.lower(), None  # UniPost's code, passed on
    if fault.status == 422:
        return 422, "validation_error", None
    if fault.status == 404:
        return 410, "unknown_at_unipost", None
    if fault.status == 429:
        return 503, "rate_limited", fault.headers.get("Retry-After", "60")  # UniPost's hint, else ours
    return 502, "unipost_error", "30"  # a 5xx, or an answer that cannot be used


def assert_refused_in_our_words(response: Any, fault: Fault, message: str) -> None:
    status, code, retry_after = answered(fault)
    assert error_of(response) == (status, code, message)
    assert response.get("Retry-After") == retry_after
    body = response.content.decode()
    assert RAW_TEXT not in body
    assert fault.said not in body
    assert "state=" not in body


@pytest.fixture
def api(user_client: Client) -> Api:
    return Api(user_client)


@pytest.mark.parametrize("fault", CREATE_FAULTS, ids=fault_id)
def test_start_faults(
    fault: Fault, api: Api, fake: FakeUniPost, user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sleeps = client_sleeps(monkeypatch)
    tries = fault.tries_at("create")
    fault.inject(fake, "create", create_answer(user), tries.calls)

    response = api.start({"platform": "linkedin", "popup": True})

    assert calls_to(fake, "POST", "/v1/connect/sessions") == tries.calls
    assert tuple(sleeps) == tries.sleeps
    row = ConnectSession.objects.get(user=user)
    assert row.popup is True
    if fault.creates:
        assert response.status_code == 201
        assert response.json()["url"] == HOSTED
        return
    assert_refused_in_our_words(response, fault, fault.message)
    # The row survives the failure, with what staff need to follow it up.
    assert row.status == ConnectSession.Status.FAILED
    assert (row.url, row.unipost_session_id) == ("", None)
    assert_error_kept(row, fault, fake)
    # And the session tells the same story afterwards.
    told = api.session(row.pk).json()
    assert told["status"] == "failed"
    assert told["error"] == {"code": answered(fault)[1], "message": fault.message}


@pytest.mark.parametrize("fault", READ_FAULTS, ids=fault_id)
def test_status_faults(
    fault: Fault, api: Api, fake: FakeUniPost, user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sleeps = client_sleeps(monkeypatch)
    tries = fault.tries_at("read")
    session = remote_session(user, minutes_ago=1)
    fault.inject(fake, "get", approved(fake, session), tries.calls)  # even though UniPost completed it

    response = api.session(session.pk)

    assert calls_to(fake, "GET", f"/v1/connect/sessions/{session.unipost_session_id}") == tries.calls
    assert tuple(sleeps) == tries.sleeps
    row = ConnectSession.objects.get(pk=session.pk)
    if fault.read_outcome == "completed":
        assert response.status_code == 200
        assert response.json()["status"] == "completed"
        assert response.json()["account"]["managed_account_id"] == row.managed_account_id
        return
    if fault.read_outcome == "pending":  # an unknown status: left alone
        assert response.status_code == 200
        assert (response.json()["status"], response.json()["error"]) == ("pending", None)
        return
    assert_refused_in_our_words(response, fault, fault.message)
    assert row.status == ConnectSession.Status.PENDING  # unchanged: UniPost was not heard
    assert ConnectedAccount.objects.count() == 0
    assert_error_kept(row, fault, fake)
    # Once UniPost answers again, the same call gives the truth.
    after = api.session(session.pk).json()
    assert (after["status"], after["error"]) == ("completed", None)


def disconnect_message(fault: Fault) -> str:
    if fault.status in (401, 429):  # the site's key, or UniPost's pacing: said as for a start
        return fault.message
    return "Your LinkedIn account could not be disconnected right now. Please try again in a few minutes."


@pytest.mark.parametrize("fault", DELETE_FAULTS, ids=fault_id)
def test_disconnect_faults(fault: Fault, api: Api, fake: FakeUniPost, user: Any) -> None:
    session = remote_session(user, minutes_ago=1)
    approved(fake, session)
    assert api.session(session.pk).status_code == 200
    account = ConnectedAccount.objects.get()
    fault.inject(fake, "delete", {}, 10)  # outlasts every retry

    response = api.disconnect(account.pk)

    account.refresh_from_db()
    if fault.status == 404:
        # UniPost no longer has it: the state asked for.
        assert response.status_code == 204
        assert account.status == ConnectedAccount.Status.DISCONNECTED
        return
    assert_refused_in_our_words(response, fault, disconnect_message(fault))
    assert account.status == ConnectedAccount.Status.ACTIVE
    assert fake.accounts[account.managed_account_id].status == "active"


def test_a_longer_retry_hint_than_the_client_waits_is_passed_on(api: Api, fake: FakeUniPost) -> None:
    fake.rate_limit_next("create", retry_after=600)
    response = api.start()
    assert error_of(response)[:2] == (503, "rate_limited")
    assert response["Retry-After"] == "600"


def test_a_5xx_retry_hint_is_passed_on(api: Api, fake: FakeUniPost) -> None:
    fake.fail_next("create", 503, headers={"Retry-After": "120"})
    response = api.start()
    assert error_of(response)[:2] == (502, "unipost_error")
    assert response["Retry-After"] == "120"


def test_an_absurd_retry_hint_is_capped_at_a_day(api: Api, fake: FakeUniPost) -> None:
    fake.rate_limit_next("create", retry_after=10**9)
    assert api.start()["Retry-After"] == str(24 * 3600)


def test_an_odd_code_from_unipost_is_not_passed_on(api: Api, fake: FakeUniPost) -> None:
    fake.fail_next("create", 402, code="Plan Limit <b>!</b>")
    assert error_of(api.start())[:2] == (402, "plan_limit")
    fake.fail_next("create", 422, code="ÜBER")
    assert error_of(api.start())[:2] == (422, "validation_error")


def test_an_external_user_id_unipost_would_refuse_is_422(api: Api, fake: FakeUniPost, settings: Any) -> None:
    settings.UNIPOST_CONNECT = {**settings.UNIPOST_CONNECT, "EXTERNAL_USER_ID": lambda user: "x" * 300}
    response = api.start()
    assert error_of(response) == (
        422,
        "invalid_external_user_id",
        "The connection could not be started. Please contact the site's support.",
    )
    assert fake.requests == []
