"""Property tests: whatever UniPost (or anything in front of it) answers, the client either
parses it or raises one of its own errors, nothing else.

A few hundred examples per property by default; ``HYPOTHESIS_PROFILE=thorough`` runs
several thousand.
"""

from __future__ import annotations

import json
import os
from datetime import UTC
from typing import Any

import requests
import responses
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers

from tests.helpers import SESSION_FIELDS
from unipost_connect.client import (
    RemoteSession,
    UniPostClient,
    error_from_response,
    is_http_url,
    parse_retry_after,
    parse_session,
)
from unipost_connect.errors import UniPostAPIError, UniPostConnectionError, UniPostError, UniPostResponseError

settings.register_profile(
    "client-default", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "client-thorough", max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
# Applied per test (not loaded globally) so other fuzz modules keep their own profiles.
FUZZ = settings.get_profile(
    "client-thorough" if os.environ.get("HYPOTHESIS_PROFILE") == "thorough" else "client-default"
)

BASE = "https://api.unipost.test"

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
session_keys = st.sampled_from(
    [
        *SESSION_FIELDS,
        "data",
        "request_id",
    ]
)
# Objects shaped like session answers, with every field possibly wrong.
session_like = st.dictionaries(
    session_keys,
    json_values
    | st.sampled_from(
        [
            "pending",
            "completed",
            "https://app.unipost.dev/c?state=s",
            "javascript:alert(1)",
            "2026-11-29T19:35:00Z",
            "0001-01-01T00:00:00+14:00",
            "cs_1",
            " ",
        ]
    ),
    max_size=10,
)
bodies_as_json = st.one_of(
    json_values,
    session_like,
    session_like.map(lambda d: {"data": d, "request_id": "req_1"}),
    st.dictionaries(
        st.sampled_from(["code", "normalized_code", "message", "hint", "is_retriable"]),
        json_values,
        max_size=5,
    ).map(lambda e: {"error": e, "request_id": "req_1"}),
    st.builds(lambda e, r: {"error": e, "request_id": r}, json_values, json_values),
)
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
header_names = st.sampled_from(["Retry-After", "X-Request-Id", "Content-Type", "Content-Encoding", "X-Other"])
headers_st = st.dictionaries(
    header_names,
    header_text
    | st.sampled_from(
        [
            "3600",
            "nan",
            "inf",
            "-1",
            "1e400",
            "Wed, 21 Oct 2015 07:28:00 GMT",
            "Fri, 31 Dec 9999 23:59:59 +1400",
            "text/html; charset=bogus",
            "application/json; charset=utf-16",
            "gzip",
        ]
    ),
    max_size=4,
)


def raw_bytes() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=300),
        bodies_as_json.map(lambda v: json.dumps(v).encode()),
        bodies_as_json.map(lambda v: json.dumps(v).encode("utf-16")),
        st.builds(lambda v, n: json.dumps(v).encode()[:n], bodies_as_json, st.integers(0, 200)),
        st.integers(1, 5000).map(lambda depth: b"[" * depth + b"]" * depth),
        st.integers(1, 5000).map(lambda depth: b'{"a":' * depth + b"1" + b"}" * depth),
        st.just(b"<html><body><h1>502 Bad Gateway</h1></body></html>"),
    )


def build_response(status: int, headers: dict[str, str], content: bytes) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.headers = CaseInsensitiveDict(headers)
    response._content = content
    response.encoding = get_encoding_from_headers(response.headers)
    response.url = f"{BASE}/v1/connect/sessions"
    return response


def check_session(remote: RemoteSession, require_url: bool) -> None:
    assert remote.id and remote.id == remote.id.strip()
    assert isinstance(remote.status, str) and remote.status.strip()
    if require_url or remote.url:
        assert is_http_url(remote.url)
    assert "\n" not in remote.url and "\r" not in remote.url
    for moment in (remote.expires_at, remote.created_at, remote.completed_at):
        # Aware and storable: converting to UTC (as the database does) must not overflow.
        assert moment is None or moment.astimezone(UTC).tzinfo is not None


@FUZZ
@given(status=st.integers(100, 599), headers=headers_st, content=raw_bytes())
def test_error_from_response_always_builds_an_error(
    status: int, headers: dict[str, str], content: bytes
) -> None:
    error = error_from_response(build_response(status, headers, content))
    assert isinstance(error, UniPostAPIError)
    assert error.status == status
    assert isinstance(error.code, str) and error.code
    assert error.normalized_code
    assert isinstance(error.message, str) and error.message
    assert isinstance(error.request_id, str)
    assert error.retry_after is None or error.retry_after >= 0
    str(error)  # renders


@FUZZ
@given(body=bodies_as_json, require_url=st.booleans())
def test_parse_session_on_any_json_shape(body: Any, require_url: bool) -> None:
    try:
        remote = parse_session(body, request_id="req_f", require_url=require_url)
    except UniPostResponseError as error:
        assert error.request_id == "req_f"
    else:
        check_session(remote, require_url)


@FUZZ
@given(body=json_values)
def test_parse_session_refuses_non_objects(body: Any) -> None:
    if isinstance(body, dict):
        return
    try:
        parse_session(body, require_url=False)
    except UniPostResponseError:
        return
    raise AssertionError("a non-object was accepted")


@FUZZ
@given(url=st.text(max_size=60) | st.from_regex(r"\A[a-zA-Z]{0,6}:?/{0,3}[^/?#]{0,12}[/?#].{0,20}\Z"))
def test_accepted_hosted_urls_are_http_with_a_host(url: str) -> None:
    body = {"data": {"id": "cs_1", "status": "pending", "url": url}}
    try:
        remote = parse_session(body, require_url=True)
    except UniPostResponseError:
        return
    assert remote.url.split(":", 1)[0].lower() in ("http", "https")
    assert not any(ch.isspace() or ord(ch) < 0x20 for ch in remote.url)


@FUZZ
@given(value=st.none() | header_text | st.text(max_size=40))
def test_retry_after_is_none_or_non_negative(value: str | None) -> None:
    seconds = parse_retry_after(value)
    assert seconds is None or seconds >= 0


@FUZZ
@given(
    status=st.integers(200, 599).filter(lambda s: not 300 <= s < 400) | st.sampled_from([200, 201, 429, 502]),
    headers=headers_st,
    content=raw_bytes(),
    method=st.sampled_from(["get", "create"]),
)
def test_client_end_to_end_never_leaks_other_exceptions(
    status: int, headers: dict[str, str], content: bytes, method: str
) -> None:
    # Content-Encoding would make urllib3 decode the body; the parser is what is under test here.
    headers = {k: v for k, v in headers.items() if k.lower() != "content-encoding"}
    client = UniPostClient("up_test_key", BASE, sleep=lambda s: None, max_retries=1)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(
            responses.GET, f"{BASE}/v1/connect/sessions/cs_1", body=content, status=status, headers=headers
        )
        rsps.add(responses.POST, f"{BASE}/v1/connect/sessions", body=content, status=status, headers=headers)
        try:
            if method == "get":
                remote = client.get_session("cs_1")
            else:
                remote = client.create_session(platform="linkedin", external_user_id="1")
        except UniPostConnectionError:
            # A 204 must have no body; urllib3 treats bytes after one as a broken connection.
            assert status == 204 and content
        except UniPostError as error:
            assert error.status == status
            if status >= 300:
                assert isinstance(error, UniPostAPIError)
        else:
            assert 200 <= status < 300
            check_session(remote, require_url=method == "create")
