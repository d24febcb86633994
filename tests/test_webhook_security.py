"""Webhook security: a shared set of refused deliveries, secret rotation, CSRF exemption.

Every refused case answers 4xx and leaves no trace in the database: no stored event, no
session or account change.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.test import Client, RequestFactory
from django.urls import reverse

from unipost_connect import services
from unipost_connect.models import ConnectedAccount, ConnectSession, WebhookEvent
from unipost_connect.testing import WebhookDelivery, build_webhook
from unipost_connect.webhooks import compute_signature

pytestmark = pytest.mark.django_db

URL = "/unipost/webhook/"
SECRET = "whsec_test"


def test_url_name() -> None:
    assert reverse("unipost_connect:webhook") == URL


@dataclass(frozen=True)
class Request:
    method: str
    body: bytes
    headers: dict[str, str]
    settings: dict[str, Any] = field(default_factory=dict)


def _signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {"X-UniPost-Signature": compute_signature(body, secret), "X-UniPost-Event": "account.connected"}


def missing_signature(d: WebhookDelivery) -> Request:
    return Request("post", d.body, {"X-UniPost-Event": d.event})


def empty_signature(d: WebhookDelivery) -> Request:
    return Request("post", d.body, {"X-UniPost-Signature": ""})


def bare_hex_without_prefix(d: WebhookDelivery) -> Request:
    return Request("post", d.body, {"X-UniPost-Signature": d.headers["X-UniPost-Signature"][7:]})


def bad_hex(d: WebhookDelivery) -> Request:
    return Request("post", d.body, {"X-UniPost-Signature": "sha256=" + "zz" * 32})


def truncated_hex(d: WebhookDelivery) -> Request:
    return Request("post", d.body, {"X-UniPost-Signature": d.headers["X-UniPost-Signature"][:-2]})


def wrong_prefix_sha1(d: WebhookDelivery) -> Request:
    digest = hmac.new(SECRET.encode(), d.body, hashlib.sha1).hexdigest()
    return Request("post", d.body, {"X-UniPost-Signature": "sha1=" + digest})


def wrong_prefix_same_digest(d: WebhookDelivery) -> Request:
    digest = d.headers["X-UniPost-Signature"].split("=", 1)[1]
    return Request("post", d.body, {"X-UniPost-Signature": "sha1=" + digest})


def other_secret(d: WebhookDelivery) -> Request:
    return Request("post", d.body, _signed(d.body, "whsec_someone_else"))


def tampered_body(d: WebhookDelivery) -> Request:
    payload = d.payload
    payload["data"]["account_name"] = "Mallory"
    return Request("post", json.dumps(payload).encode(), dict(d.headers))


def tampered_whitespace(d: WebhookDelivery) -> Request:
    return Request("post", d.body + b" ", dict(d.headers))


def oversized_body(d: WebhookDelivery) -> Request:
    # Correctly signed, so only the size limit can refuse it.
    payload = d.payload
    payload["padding"] = "x" * 2048
    body = json.dumps(payload).encode()
    return Request("post", body, _signed(body), settings={"WEBHOOK_MAX_BODY_BYTES": 1024})


def oversized_default_limit(d: WebhookDelivery) -> Request:
    payload = d.payload
    payload["padding"] = "x" * (256 * 1024)
    body = json.dumps(payload).encode()
    return Request("post", body, _signed(body))


def get_method(d: WebhookDelivery) -> Request:
    return Request("get", b"", dict(d.headers))


def put_method(d: WebhookDelivery) -> Request:
    return Request("put", d.body, dict(d.headers))


def empty_secret(d: WebhookDelivery) -> Request:
    return Request("post", d.body, dict(d.headers), settings={"WEBHOOK_SECRET": ""})


def empty_secret_list(d: WebhookDelivery) -> Request:
    return Request("post", d.body, dict(d.headers), settings={"WEBHOOK_SECRET": ["", ""]})


def empty_secret_signed_with_empty_key(d: WebhookDelivery) -> Request:
    return Request("post", d.body, _signed(d.body, ""), settings={"WEBHOOK_SECRET": ""})


def signed_not_json(d: WebhookDelivery) -> Request:
    body = b"<html>not json</html>"
    return Request("post", body, _signed(body))


def signed_json_list(d: WebhookDelivery) -> Request:
    body = b'[{"event": "account.connected"}]'
    return Request("post", body, _signed(body))


def signed_without_event(d: WebhookDelivery) -> Request:
    body = b'{"data": {"social_account_id": "sa_1"}}'
    return Request("post", body, _signed(body))


def signed_data_not_object(d: WebhookDelivery) -> Request:
    body = b'{"event": "account.connected", "data": ["sa_1"]}'
    return Request("post", body, _signed(body))


def signed_nan(d: WebhookDelivery) -> Request:
    body = b'{"event": "account.connected", "data": {"x": NaN}}'
    return Request("post", body, _signed(body))


def signed_nul_character(d: WebhookDelivery) -> Request:
    body = b'{"event": "account.connected", "data": {"account_name": "a\\u0000b"}}'
    return Request("post", body, _signed(body))


def signed_deep_nesting(d: WebhookDelivery) -> Request:
    body = b'{"event": "x", "data": {"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}"
    return Request("post", body, _signed(body))


CASES: list[tuple[Callable[[WebhookDelivery], Request], int]] = [
    (missing_signature, 403),
    (empty_signature, 403),
    (bare_hex_without_prefix, 403),
    (bad_hex, 403),
    (truncated_hex, 403),
    (wrong_prefix_sha1, 403),
    (wrong_prefix_same_digest, 403),
    (other_secret, 403),
    (tampered_body, 403),
    (tampered_whitespace, 403),
    (oversized_body, 413),
    (oversized_default_limit, 413),
    (get_method, 405),
    (put_method, 405),
    (empty_secret, 403),
    (empty_secret_list, 403),
    (empty_secret_signed_with_empty_key, 403),
    (signed_not_json, 400),
    (signed_json_list, 400),
    (signed_without_event, 400),
    (signed_data_not_object, 400),
    (signed_nan, 400),
    (signed_nul_character, 400),
    (signed_deep_nesting, 400),
]


@pytest.fixture
def approved(fake: Any, user: Any) -> tuple[ConnectSession, WebhookDelivery]:
    """A session the user approved at UniPost; its webhook is not delivered yet."""
    session = services.start_session(user, "linkedin", request=RequestFactory().get("/"))
    fake.approve(session.unipost_session_id, account_name="Alex on LinkedIn")
    (delivery,) = fake.outbox
    return session, delivery


@pytest.mark.parametrize("case,status", CASES, ids=[case.__name__ for case, _ in CASES])
def test_refused_delivery_leaves_no_trace(
    case: Callable[[WebhookDelivery], Request],
    status: int,
    approved: tuple[ConnectSession, WebhookDelivery],
    settings: Any,
) -> None:
    session, delivery = approved
    request = case(delivery)
    settings.UNIPOST_CONNECT = {**settings.UNIPOST_CONNECT, **request.settings}
    client = Client(enforce_csrf_checks=True, raise_request_exception=False)
    send = getattr(client, request.method)
    if request.method == "get":
        answer = send(URL, headers=request.headers)
    else:
        answer = send(URL, data=request.body, content_type="application/json", headers=request.headers)
    assert answer.status_code == status
    assert 400 <= answer.status_code < 500
    assert WebhookEvent.objects.count() == 0
    assert ConnectedAccount.objects.count() == 0
    session.refresh_from_db()
    assert session.status == "pending"
    assert session.managed_account_id == ""


def test_the_untouched_delivery_is_accepted(approved: tuple[ConnectSession, WebhookDelivery]) -> None:
    """The control for the cases above: the same delivery, unaltered, goes through."""
    session, delivery = approved
    answer = Client(enforce_csrf_checks=True).post(URL, **delivery.django_client_kwargs())
    assert answer.status_code == 200
    assert answer.json() == {"received": True, "duplicate": False, "result": "applied"}
    session.refresh_from_db()
    assert session.status == "completed"


def test_csrf_enforcing_client_can_deliver(approved: tuple[ConnectSession, WebhookDelivery]) -> None:
    _, delivery = approved
    client = Client(enforce_csrf_checks=True)
    answer = client.post(URL, **delivery.django_client_kwargs())
    assert answer.status_code == 200
    assert WebhookEvent.objects.count() == 1


def test_refusal_is_logged_without_the_body(
    approved: tuple[ConnectSession, WebhookDelivery], caplog: pytest.LogCaptureFixture
) -> None:
    _, delivery = approved
    request = other_secret(delivery)
    with caplog.at_level("WARNING", logger="unipost_connect"):
        answer = Client().post(
            URL, data=request.body, content_type="application/json", headers=request.headers
        )
    assert answer.status_code == 403
    assert "signature does not match" in caplog.text
    assert "Alex on LinkedIn" not in caplog.text


@pytest.mark.parametrize("signing_secret", ["whsec_new", "whsec_old"])
def test_rotation_accepts_every_listed_secret(
    signing_secret: str, approved: tuple[ConnectSession, WebhookDelivery], settings: Any
) -> None:
    session, delivery = approved
    settings.UNIPOST_CONNECT = {**settings.UNIPOST_CONNECT, "WEBHOOK_SECRET": ["whsec_new", "whsec_old"]}
    body = delivery.body
    answer = Client().post(
        URL, data=body, content_type="application/json", headers=_signed(body, signing_secret)
    )
    assert answer.status_code == 200
    assert WebhookEvent.objects.count() == 1
    session.refresh_from_db()
    assert session.status == "completed"


def test_rotation_still_refuses_a_secret_not_listed(
    approved: tuple[ConnectSession, WebhookDelivery], settings: Any
) -> None:
    _, delivery = approved
    settings.UNIPOST_CONNECT = {**settings.UNIPOST_CONNECT, "WEBHOOK_SECRET": ["whsec_new", "whsec_old"]}
    answer = Client().post(
        URL, data=delivery.body, content_type="application/json", headers=_signed(delivery.body, SECRET)
    )
    assert answer.status_code == 403
    assert WebhookEvent.objects.count() == 0


def test_a_tuple_of_secrets_is_accepted_too(settings: Any, user: Any) -> None:
    settings.UNIPOST_CONNECT = {**settings.UNIPOST_CONNECT, "WEBHOOK_SECRET": ("whsec_a", "whsec_b")}
    delivery = build_webhook("something.else", {}, "whsec_b")
    answer = Client().post(URL, **delivery.django_client_kwargs())
    assert answer.status_code == 200
    assert answer.json()["result"] == "ignored"
