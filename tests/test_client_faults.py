"""The client under network faults: what is retried, how long it waits, and what is never resent."""

from __future__ import annotations

import io
import socket
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
import requests
import responses

from tests.faults import ONCE, RETRIED, TRANSPORT_FAULTS, Fault, body_reset_after, fault_id, refused
from unipost_connect.client import UniPostClient, parse_retry_after
from unipost_connect.errors import (
    RateLimitedError,
    ServerError,
    UniPostConnectionError,
    UniPostError,
)
from unipost_connect.testing import FakeUniPost

BASE = "https://api.unipost.test"
KEY = "up_test_key"
SESSIONS = f"{BASE}/v1/connect/sessions"
SESSION = {
    "id": "cs_1",
    "platform": "linkedin",
    "external_user_id": "42",
    "status": "pending",
    "url": "https://app.unipost.test/connect/linkedin?session=cs_1&state=s",
}
OK = {"data": SESSION, "request_id": "req_ok"}


class Sleeps(list[float]):
    """Records the waits the client asks for instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make_client(sleeps: Sleeps | None = None, **kwargs: Any) -> UniPostClient:
    return UniPostClient(KEY, BASE, sleep=sleeps if sleeps is not None else Sleeps(), **kwargs)


def create(client: UniPostClient) -> Any:
    return client.create_session(platform="linkedin", external_user_id="42")


def body_reset_mid_way() -> io.BufferedReader:
    return body_reset_after(b'{"data": {"id": "cs_1", "status": "pen')


# -- GET: retried on transient faults -----------------------------------------------------------------


# Every connection fault of the shared table: a GET is always safe to resend.


@pytest.mark.parametrize("fault", TRANSPORT_FAULTS, ids=fault_id)
def test_get_retried_after_transport_failure(fault: Fault) -> None:
    assert fault.exception is not None and fault.read == RETRIED
    sleeps = Sleeps()
    with responses.RequestsMock() as rsps:
        rsps.get(f"{SESSIONS}/cs_1", body=fault.exception())
        rsps.get(f"{SESSIONS}/cs_1", json=OK)
        assert make_client(sleeps).get_session("cs_1").id == "cs_1"
        assert len(rsps.calls) == 2
    assert sleeps == [0.25]


@pytest.mark.parametrize("fault", TRANSPORT_FAULTS, ids=fault_id)
def test_get_gives_up_after_max_retries(fault: Fault) -> None:
    assert fault.exception is not None
    sleeps = Sleeps()
    with responses.RequestsMock() as rsps:
        rsps.get(f"{SESSIONS}/cs_1", body=fault.exception())
        with pytest.raises(UniPostConnectionError) as info:
            make_client(sleeps, max_retries=3).get_session("cs_1")
        assert len(rsps.calls) == 4
    assert info.value.code == fault.code
    assert info.value.status is None
    assert info.value.is_retriable
    assert isinstance(info.value.__cause__, requests.RequestException)
    assert sleeps == [0.25, 0.5, 1.0]


def test_get_retried_after_reset_mid_body() -> None:
    sleeps = Sleeps()
    with responses.RequestsMock() as rsps:
        rsps.get(f"{SESSIONS}/cs_1", body=body_reset_mid_way(), content_type="application/json")
        rsps.get(f"{SESSIONS}/cs_1", json=OK)
        assert make_client(sleeps).get_session("cs_1").status == "pending"
        assert len(rsps.calls) == 2


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_get_retried_on_5xx_with_backoff(status: int) -> None:
    sleeps = Sleeps()
    with responses.RequestsMock() as rsps:
        rsps.get(f"{SESSIONS}/cs_1", body="<html>Bad Gateway</html>", status=status, content_type="text/html")
        rsps.get(f"{SESSIONS}/cs_1", body="<html>Bad Gateway</html>", status=status, content_type="text/html")
        rsps.get(f"{SESSIONS}/cs_1", json=OK)
        assert make_client(sleeps).get_session("cs_1").id == "cs_1"
        assert len(rsps.calls) == 3
    assert sleeps == [0.25, 0.5]


def test_backoff_is_capped_by_retry_max_wait() -> None:
    sleeps = Sleeps()
    with responses.RequestsMock() as rsps:
        rsps.get(f"{SESSIONS}/cs_1", status=503)
        with pytest.raises(ServerError):
            make_client(sleeps, max_retries=6, backoff=1.0, retry_max_wait=5.0).get_session("cs_1")
        assert len(rsps.calls) == 7
    assert sleeps == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


@pytest.mark.parametrize("max_retries", [0, 1, 2, 5])
def test_retries_are_bounded_by_max_retries(fake: FakeUniPost, max_retries: int) -> None:
    sleeps = Sleeps()
    fake.fail_next("get", 500, times=100)
    with pytest.raises(ServerError) as info:
        make_client(sleeps, max_retries=max_retries).get_session("cs_1")
    assert len(fake.requests) == max_retries + 1
    assert len(sleeps) == max_retries
    assert info.value.code == "INTERNAL_ERROR"


def test_negative_max_retries_means_one_attempt(fake: FakeUniPost) -> None:
    fake.fail_next("get", 503, times=5)
    with pytest.raises(ServerError):
        make_client(max_retries=-3).get_session("cs_1")
    assert len(fake.requests) == 1


@pytest.mark.parametrize("status", [400, 401, 402, 404, 422])
def test_get_not_retried_on_client_errors(fake: FakeUniPost, status: int) -> None:
    fake.fail_next("get", status, times=5)
    with pytest.raises(UniPostError) as info:
        make_client().get_session("cs_1")
    assert info.value.status == status
    assert not info.value.is_retriable
    assert len(fake.requests) == 1


@responses.activate
def test_no_retry_starts_after_the_deadline() -> None:
    responses.get(f"{SESSIONS}/cs_1", status=503, body="busy")
    waits: list[float] = []
    client = UniPostClient("up_test_k", BASE, deadline=0.1, sleep=waits.append)
    with pytest.raises(ServerError):
        client.get_session("cs_1")
    assert len(responses.calls) == 1  # the first backoff (0.25 s) would pass the deadline
    assert waits == []


@responses.activate
def test_a_per_call_retry_count_overrides_the_clients() -> None:
    responses.get(f"{SESSIONS}/cs_1", status=503, body="busy")
    client = UniPostClient("up_test_k", BASE, max_retries=2, sleep=lambda s: None)
    with pytest.raises(ServerError):
        client.get_session("cs_1", max_retries=0)
    assert len(responses.calls) == 1


# -- 429 and Retry-After -------------------------------------------------------------------------------


def test_get_429_honours_retry_after(fake: FakeUniPost) -> None:
    sleeps = Sleeps()
    remote = create(make_client())
    fake.rate_limit_next("get", retry_after=3)
    assert make_client(sleeps).get_session(remote.id).id == remote.id
    assert sleeps == [3.0]


def test_429_without_retry_after_uses_backoff(fake: FakeUniPost) -> None:
    sleeps = Sleeps()
    remote = create(make_client())
    fake.rate_limit_next("get", retry_after=None, times=2)
    assert make_client(sleeps).get_session(remote.id).id == remote.id
    assert sleeps == [0.25, 0.5]


def test_retry_after_as_http_date(fake: FakeUniPost) -> None:
    sleeps = Sleeps()
    remote = create(make_client())
    when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 3))
    fake.fail_next("get", 429, code="RATE_LIMITED", headers={"Retry-After": when})
    make_client(sleeps).get_session(remote.id)
    assert len(sleeps) == 1 and 0 <= sleeps[0] <= 4


def test_retry_after_http_date_without_zone_is_read_as_utc() -> None:
    # "-0000" means "UTC, source zone unknown": parsedate_to_datetime gives a naive datetime.
    later = datetime.now(UTC) + timedelta(seconds=120)
    header = format_datetime(later.replace(tzinfo=None))
    assert header.endswith("-0000")
    seconds = parse_retry_after(header)
    assert seconds is not None
    assert 100 < seconds <= 120


def test_retry_after_http_date_in_the_past_is_zero() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 -0000") == 0.0


@pytest.mark.parametrize("retry_after", ["3600", "86400", "inf", "1e400"])
def test_retry_after_beyond_the_cap_is_raised_not_slept(fake: FakeUniPost, retry_after: str) -> None:
    sleeps = Sleeps()
    fake.fail_next("get", 429, code="RATE_LIMITED", headers={"Retry-After": retry_after}, times=5)
    started = time.monotonic()
    with pytest.raises(RateLimitedError) as info:
        make_client(sleeps, retry_max_wait=5.0).get_session("cs_1")
    assert time.monotonic() - started < 1
    assert sleeps == []
    assert len(fake.requests) == 1
    assert info.value.retry_after is not None and info.value.retry_after >= 3600
    assert info.value.status == 429
    assert info.value.is_retriable


@pytest.mark.parametrize("retry_after", ["soon", "nan", "-5", ""])
def test_odd_retry_after_values_do_not_break_retrying(fake: FakeUniPost, retry_after: str) -> None:
    sleeps = Sleeps()
    remote = create(make_client())
    fake.fail_next("get", 429, code="RATE_LIMITED", headers={"Retry-After": retry_after})
    assert make_client(sleeps).get_session(remote.id).id == remote.id
    assert len(sleeps) == 1 and 0 <= sleeps[0] <= 5


def test_retry_after_is_honoured_on_503(fake: FakeUniPost) -> None:
    sleeps = Sleeps()
    remote = create(make_client())
    fake.fail_next("get", 503, headers={"Retry-After": "2"})
    make_client(sleeps).get_session(remote.id)
    assert sleeps == [2.0]


def test_429_persisting_is_raised_after_max_retries(fake: FakeUniPost) -> None:
    sleeps = Sleeps()
    fake.rate_limit_next("get", retry_after=1, times=10)
    with pytest.raises(RateLimitedError) as info:
        make_client(sleeps, max_retries=2).get_session("cs_1")
    assert sleeps == [1.0, 1.0]
    assert info.value.code == "RATE_LIMITED"
    assert info.value.retry_after == 1.0


def test_default_sleep_is_patchable_so_tests_never_wait(fake: FakeUniPost) -> None:
    # conftest patches time.sleep; a client built with the default must honour the patch.
    remote = create(UniPostClient(KEY, BASE))
    fake.rate_limit_next("get", retry_after=4, times=2)
    started = time.monotonic()
    assert UniPostClient(KEY, BASE).get_session(remote.id).id == remote.id
    assert time.monotonic() - started < 2


# -- POST create: no idempotency key, so never resent when it may have arrived ---------------------


# The shared table's connection faults after which the request may have reached UniPost.
AMBIGUOUS_POST_FAULTS = [f for f in TRANSPORT_FAULTS if f.create == ONCE]
# ... and those after which it cannot have: nothing was sent, so the POST is resent.
NEVER_SENT_FAULTS = [f for f in TRANSPORT_FAULTS if f.create == RETRIED]


@pytest.mark.parametrize("fault", AMBIGUOUS_POST_FAULTS, ids=fault_id)
def test_create_not_retried_when_it_may_have_arrived(fake: FakeUniPost, fault: Fault) -> None:
    assert fault.exception is not None
    sleeps = Sleeps()
    fake.fail_next("create", exception=fault.exception())
    with pytest.raises(UniPostConnectionError) as info:
        create(make_client(sleeps))
    assert info.value.code == fault.code
    assert fake.requests == [("POST", "/v1/connect/sessions")]
    assert sleeps == []


def test_create_not_retried_after_reset_mid_body() -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.post(SESSIONS, body=body_reset_mid_way(), status=201, content_type="application/json")
        rsps.post(SESSIONS, json=OK, status=201)
        with pytest.raises(UniPostConnectionError):
            create(make_client())
        assert len(rsps.calls) == 1


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_create_not_retried_after_5xx(fake: FakeUniPost, status: int) -> None:
    sleeps = Sleeps()
    fake.fail_next("create", status, times=3)
    with pytest.raises(ServerError) as info:
        create(make_client(sleeps))
    assert info.value.status == status
    assert len(fake.requests) == 1
    assert sleeps == []


@pytest.mark.parametrize("fault", NEVER_SENT_FAULTS, ids=fault_id)
def test_create_retried_when_it_never_left(fake: FakeUniPost, fault: Fault) -> None:
    assert fault.exception is not None
    sleeps = Sleeps()
    fake.fail_next("create", exception=fault.exception())
    remote = create(make_client(sleeps))
    assert remote.status == "pending"
    assert len(fake.requests) == 2
    assert list(fake.sessions) == [remote.id]
    assert sleeps == [0.25]


def test_create_retried_on_429_honouring_retry_after(fake: FakeUniPost) -> None:
    sleeps = Sleeps()
    fake.rate_limit_next("create", retry_after=2)
    remote = create(make_client(sleeps))
    assert list(fake.sessions) == [remote.id]
    assert sleeps == [2.0]


def test_create_429_of_an_hour_is_raised(fake: FakeUniPost) -> None:
    sleeps = Sleeps()
    fake.rate_limit_next("create", retry_after=3600)
    with pytest.raises(RateLimitedError) as info:
        create(make_client(sleeps))
    assert info.value.retry_after == 3600
    assert fake.sessions == {}
    assert sleeps == []


def test_create_refused_every_time_is_bounded(fake: FakeUniPost) -> None:
    sleeps = Sleeps()
    fake.fail_next("create", exception=refused(), times=10)
    with pytest.raises(UniPostConnectionError) as info:
        create(make_client(sleeps, max_retries=2))
    assert info.value.code == "CONNECTION_ERROR"
    assert len(fake.requests) == 3
    assert fake.sessions == {}


# -- a real socket: connection refused on loopback ----------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("method", ["get", "create"])
def test_real_connection_refused_is_retried(method: str) -> None:
    sleeps = Sleeps()
    client = UniPostClient(
        KEY, f"http://127.0.0.1:{_closed_port()}", sleep=sleeps, max_retries=2, timeout=(1.0, 1.0)
    )
    with pytest.raises(UniPostConnectionError) as info:
        client.get_session("cs_1") if method == "get" else create(client)
    assert info.value.code == "CONNECTION_ERROR"
    assert len(sleeps) == 2  # both kinds resent: a refused connection carried nothing
