"""Webhooks as UniPost sends them: built and signed (:func:`build_webhook`), then POSTed
by the one delivery policy (:class:`WebhookSender`) that the standalone server
(:mod:`.server`) and the live demo (:mod:`.live`) share.

The policy, like UniPost's worker: the webhook leaves after the page has answered (a
delay, in a thread of its own), and a delivery not answered with a 2xx is tried again,
up to three attempts in all.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests

from ..webhooks import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, compute_signature
from .records import FakeAccount, iso

logger = logging.getLogger("unipost_connect.testing")

# Seconds between a hosted page's answer and the first attempt: UniPost's worker is
# asynchronous, so a site must cope with the user arriving back before the webhook does.
DELIVERY_DELAY = 1.0
# UniPost's worker: 3 attempts in all, 5 seconds each. Its real pauses are about 1, 5 and
# 30 minutes; a demo or a test cannot wait that long, so these are seconds.
DELIVERY_ATTEMPTS = 3
DELIVERY_TIMEOUT = 5.0
DELIVERY_PAUSES = (1.0, 3.0)


@dataclass(frozen=True)
class WebhookDelivery:
    """A signed webhook as UniPost would POST it."""

    event: str
    body: bytes
    headers: Mapping[str, str]

    @property
    def payload(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.body)
        return result

    def django_client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``django.test.Client.post(url, **kwargs)``."""
        # The content type travels as ``content_type``; the other headers as they are.
        headers = {k: v for k, v in self.headers.items() if k.lower() != "content-type"}
        return {"data": self.body, "content_type": "application/json", "headers": headers}


def build_webhook(
    event: str,
    data: Mapping[str, Any],
    secret: str,
    *,
    event_id: str | None = None,
    timestamp: datetime | None = None,
    delivery_id: str | None = None,
) -> WebhookDelivery:
    """Build a webhook body and its headers, signed with ``secret`` as UniPost signs it.

    ``account.*`` events come without ``event_id`` from the live server, so none is sent
    unless ``event_id`` is given (post events carry one). Body keys come in the live
    order: event, [event_id], timestamp, data.
    """
    payload: dict[str, Any] = {"event": event}
    if event_id:
        payload["event_id"] = event_id
    payload["timestamp"] = iso(timestamp or datetime.now(UTC))
    payload["data"] = dict(data)
    body = json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: compute_signature(body, secret),
        EVENT_HEADER: event,
    }
    if delivery_id:
        headers[DELIVERY_HEADER] = delivery_id
    return WebhookDelivery(event=event, body=body, headers=headers)


def connected_data(account: FakeAccount) -> dict[str, Any]:
    """The ``data`` of ``account.connected``, in the live server's key order."""
    return {
        "social_account_id": account.id,
        "profile_id": account.profile_id,
        "platform": account.platform,
        "account_name": account.account_name,
        "external_user_id": account.external_user_id,
        "connection_type": account.connection_type,
    }


def disconnected_data(
    account: FakeAccount, at: datetime | None, reason: str, *, worker: bool
) -> dict[str, Any]:
    """The ``data`` of ``account.disconnected``; the token-refresh ``worker``'s event also
    names the end user and the connection type, the dashboard's does not."""
    data: dict[str, Any] = {
        "social_account_id": account.id,
        "platform": account.platform,
        "profile_id": account.profile_id,
        "account_name": account.account_name,
    }
    if worker:
        data.update(external_user_id=account.external_user_id, connection_type=account.connection_type)
    return {**data, "disconnected_at": iso(at), "reason": reason}


@dataclass(frozen=True)
class DeliveryResult:
    """How one webhook delivery ended: the last answer's status, or the transport error.

    ``event_id`` is empty for ``account.*`` events, which carry none.
    """

    event: str
    event_id: str
    url: str
    attempts: int
    status: int | None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def deliver_webhook(
    delivery: WebhookDelivery,
    url: str,
    *,
    delay: float = 0.0,
    attempts: int = DELIVERY_ATTEMPTS,
    timeout: float = DELIVERY_TIMEOUT,
    pauses: Sequence[float] = DELIVERY_PAUSES,
    sleep: Callable[[float], None] = time.sleep,
) -> DeliveryResult:
    """POST ``delivery`` to ``url`` in this thread, retried until a 2xx answer."""
    event_id = str(delivery.payload.get("event_id", ""))
    if delay > 0:
        sleep(delay)
    status: int | None = None
    error = ""
    attempt = 0
    for attempt in range(1, attempts + 1):
        try:
            answer = requests.post(url, data=delivery.body, headers=dict(delivery.headers), timeout=timeout)
        except requests.RequestException as exc:
            status, error = None, type(exc).__name__
            logger.warning("Fake webhook %s to %s failed: %s", delivery.event, url, error)
        else:
            status, error = answer.status_code, ""
            if 200 <= status < 300:
                break
            logger.warning("Fake webhook %s to %s answered %s", delivery.event, url, status)
        if attempt < attempts:
            sleep(pauses[min(attempt - 1, len(pauses) - 1)] if pauses else 0)
    return DeliveryResult(delivery.event, event_id, url, attempt, status, error)


class WebhookSender:
    """The delivery policy: a ``FakeUniPost.on_webhook`` hook that POSTs each webhook to
    ``url`` from a daemon thread, after ``delay`` seconds, with UniPost's retries.

    No URL, or a negative delay, turns delivery off (the fake's outbox still records
    every webhook). :meth:`send` takes a URL and delay per delivery, for a caller that
    reads them from settings each time. :attr:`results` lists finished deliveries.
    """

    def __init__(
        self,
        url: str = "",
        *,
        delay: float = DELIVERY_DELAY,
        attempts: int = DELIVERY_ATTEMPTS,
        timeout: float = DELIVERY_TIMEOUT,
        pauses: Sequence[float] = DELIVERY_PAUSES,
    ) -> None:
        self.url = url
        self.delay = delay
        self.attempts = attempts
        self.timeout = timeout
        self.pauses = pauses
        self.results: list[DeliveryResult] = []
        self._started = 0
        self._running: list[threading.Thread] = []
        self._lock = threading.Lock()

    def __call__(self, delivery: WebhookDelivery) -> None:
        self.send(delivery)

    def send(self, delivery: WebhookDelivery, url: str | None = None, delay: float | None = None) -> bool:
        """Start delivering ``delivery`` (to :attr:`url` after :attr:`delay` unless given);
        False when delivery is off. The caller goes on at once, as the hosted page does."""
        url = self.url if url is None else url
        delay = self.delay if delay is None else delay
        if delay < 0 or not url:
            return False
        thread = threading.Thread(
            target=self._run, args=(delivery, url, delay), name=f"fake-webhook-{delivery.event}", daemon=True
        )
        with self._lock:
            # Only live threads are kept, so a long-running demo does not hoard them.
            self._running = [t for t in self._running if t.is_alive()] + [thread]
            self._started += 1
        thread.start()
        return True

    def _run(self, delivery: WebhookDelivery, url: str, delay: float) -> None:
        result = deliver_webhook(
            delivery, url, delay=delay, attempts=self.attempts, timeout=self.timeout, pauses=self.pauses
        )
        with self._lock:
            self.results.append(result)

    def wait(self, timeout: float = 10.0) -> bool:
        """Wait for every delivery started so far; True if none is still running."""
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._running)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in threads)

    def summary(self) -> dict[str, int]:
        """Deliveries started, finished (2xx or out of attempts) and still running."""
        with self._lock:
            finished = len(self.results)
            delivered = sum(result.ok for result in self.results)
            started = self._started
        # A started thread counts as running until its result is in.
        return {
            "started": started,
            "finished": finished,
            "delivered": delivered,
            "failed": finished - delivered,
            "in_flight": started - finished,
        }
