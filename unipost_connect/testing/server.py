"""A :class:`~unipost_connect.testing.FakeUniPost` served over real HTTP, on its own.

From a shell (prints the base URL, serves until Ctrl-C or SIGTERM)::

    python -m unipost_connect.testing.server --host 127.0.0.1 --port 8001 \\
        --api-key up_test_x --webhook-secret whsec_x \\
        --webhook-url http://127.0.0.1:8000/unipost/webhook/ --latency-ms 0

From Python (tests, benchmarks)::

    fake = FakeUniPost(api_key="up_test_x", webhook_secret="whsec_x")
    server = FakeUniPostServer(fake, "127.0.0.1", 0, webhook_url=...)
    server.start()            # a background thread; server.base_url is now known
    ...                       # point UNIPOST_CONNECT["API_BASE_URL"] at server.base_url
    server.stop()

The server speaks HTTP/1.1 with keep-alive and counts the TCP connections it accepts
(:attr:`FakeUniPostServer.connections_accepted`), so a benchmark can show that a client
reuses its connections. A transport failure injected with
``fake.fail_next(exception=...)`` resets the connection (TCP RST, no answer), as a
crashing proxy would. Every webhook the fake emits (a completed hosted page, a
``DELETE``, ``fake.fail_token_refresh(...)``) is POSTed to ``webhook_url`` after
``webhook_delay`` seconds, with UniPost's retries and without ``event_id``, as the live
worker sends ``account.*`` events.

Test control (fake-only: the live API has none of these routes). Under ``/_fake/``,
authorised with the same ``Authorization: Bearer <api key>`` (else 401), answering
``{"data": ...}``; they add no latency, take no injected faults and are not counted in
``fake.requests``, so a benchmark can drive and inspect the fake from another process:

- ``POST /_fake/accounts/{id}/fail-refresh`` (optional ``reason`` as a form or JSON
  field, default ``refresh_failed``): ``fake.fail_token_refresh(id, reason)``; the
  account becomes ``reconnect_required`` and ``account.disconnected`` is sent. 404 for
  an unknown account, 409 when it is not active, 422 for an unknown reason.
- ``GET /_fake/accounts``: every account with its status, ``disconnected`` ones too
  (``GET /v1/accounts`` has no paging beyond its 100 and hides those).
- ``GET /_fake/sessions`` (optional ``external_user_id``, ``platform``): every session the
  fake created, lazy expiry applied, so extra creates can be counted.
- ``GET /_fake/webhooks``: ``{"emitted", "started", "finished", "delivered", "failed",
  "in_flight"}`` for the deliveries to ``webhook_url`` (only ``emitted`` without one), so
  a caller can wait until the last has ended.

Nothing here logs the API key, request bodies or the hosted page's ``state``.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from ..contract import REFRESH_FAILURE_REASONS
from ..redaction import redact_state
from .fake import FakeResponse, FakeUniPost, WebhookDelivery

logger = logging.getLogger("unipost_connect.testing")

# UniPost's delivery worker: 3 attempts in all, 5 seconds each. The real pauses are
# about 1, 5 and 30 minutes; a demo cannot wait that long, so these are seconds.
DELIVERY_ATTEMPTS = 3
DELIVERY_TIMEOUT = 5.0
DELIVERY_PAUSES = (1.0, 3.0)


def redact(text: str) -> str:
    """``text`` with the hosted page's bearer ``state`` replaced, for logs."""
    return redact_state(text)


# -- webhook delivery (shared with unipost_connect.testing.live) --------------------


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
    """POST ``delivery`` to ``url`` like UniPost's worker: retried until a 2xx answer."""
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


def deliver_in_background(
    delivery: WebhookDelivery,
    url: str,
    *,
    delay: float = 1.0,
    on_result: Callable[[DeliveryResult], None] | None = None,
    **kwargs: Any,
) -> threading.Thread:
    """Start :func:`deliver_webhook` in a daemon thread, so the hosted page answers at once."""

    def run() -> None:
        result = deliver_webhook(delivery, url, delay=delay, **kwargs)
        if on_result is not None:
            on_result(result)

    thread = threading.Thread(target=run, name=f"fake-webhook-{delivery.event}", daemon=True)
    thread.start()
    return thread


class WebhookSender:
    """A ``FakeUniPost.on_webhook`` hook that delivers each webhook to one URL over HTTP.

    ``delay`` seconds pass before the first attempt (UniPost's worker is asynchronous;
    a negative delay turns delivery off). :attr:`results` lists finished deliveries.
    """

    def __init__(self, url: str, *, delay: float = 1.0, **kwargs: Any) -> None:
        self.url = url
        self.delay = delay
        self.kwargs = kwargs
        self.results: list[DeliveryResult] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def __call__(self, delivery: WebhookDelivery) -> None:
        if self.delay < 0 or not self.url:
            return
        thread = deliver_in_background(
            delivery, self.url, delay=self.delay, on_result=self._record, **self.kwargs
        )
        with self._lock:
            self._threads.append(thread)

    def _record(self, result: DeliveryResult) -> None:
        with self._lock:
            self.results.append(result)

    def wait(self, timeout: float = 10.0) -> bool:
        """Wait for every delivery started so far; True if none is still running."""
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in threads)

    def summary(self) -> dict[str, int]:
        """Deliveries started, finished (2xx or out of attempts) and still running."""
        with self._lock:
            results = list(self.results)
            started = len(self._threads)
            running = sum(thread.is_alive() for thread in self._threads)
        delivered = sum(result.ok for result in results)
        return {
            "started": started,
            "finished": len(results),
            "delivered": delivered,
            "failed": len(results) - delivered,
            "in_flight": running,
        }


# -- test control (fake-only routes) ------------------------------------------------------

CONTROL_PREFIX = "/_fake/"
_FAIL_REFRESH = re.compile(r"/_fake/accounts/([^/]+)/fail-refresh")


def _control_json(status: int, payload: dict[str, Any]) -> FakeResponse:
    return FakeResponse(status, json.dumps(payload).encode(), {"Content-Type": "application/json"})


def _control_error(status: int, message: str) -> FakeResponse:
    return _control_json(status, {"error": {"code": "FAKE_CONTROL", "message": message}})


def _form_or_json(body: bytes) -> dict[str, str]:
    """The fields of a form or JSON object body (strings only; anything else is ignored)."""
    text = body.decode("utf-8", "replace").strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            return {}
        return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}
    return {k: v[0] for k, v in parse_qs(text).items()}


def control_answer(
    server: FakeUniPostServer, method: str, path: str, query: str, authorized: bool, body: bytes
) -> FakeResponse:
    """Answer a ``/_fake/`` test-control request (see the module docstring)."""
    if not authorized:
        return _control_error(401, "Invalid or missing API key")
    fake = server.fake
    path = path.rstrip("/")
    match = _FAIL_REFRESH.fullmatch(path)
    if match and method == "POST":
        return _fail_refresh(fake, match.group(1), _form_or_json(body).get("reason") or "refresh_failed")
    if path == "/_fake/accounts" and method == "GET":
        with fake._lock:  # the fake's own lock: a consistent snapshot
            accounts = [account.as_json() for account in fake.accounts.values()]
        return _control_json(200, {"data": accounts})
    if path == "/_fake/sessions" and method == "GET":
        wanted = {k: v[0] for k, v in parse_qs(query).items() if k in ("external_user_id", "platform")}
        with fake._lock:
            ids = list(fake.sessions)
        found = (fake.get_session(session_id) for session_id in ids)  # applies lazy expiry
        sessions = [
            s.as_json() for s in found if s is not None and all(getattr(s, k) == v for k, v in wanted.items())
        ]
        return _control_json(200, {"data": sessions})
    if path == "/_fake/webhooks" and method == "GET":
        sent = server.webhooks.summary() if server.webhooks is not None else {}
        return _control_json(200, {"data": {"emitted": len(fake.outbox), **sent}})
    return _control_error(404, f"No test-control route {method} {path}")


def _fail_refresh(fake: FakeUniPost, account_id: str, reason: str) -> FakeResponse:
    if reason not in REFRESH_FAILURE_REASONS:
        return _control_error(422, f"reason must be one of {' '.join(sorted(REFRESH_FAILURE_REASONS))}")
    account = fake.accounts.get(account_id)
    if account is None:
        return _control_error(404, "Account not found")
    try:
        delivery = fake.fail_token_refresh(account_id, reason=reason)
    except ValueError as exc:  # not active (already failed, or disconnected)
        return _control_error(409, str(exc))
    return _control_json(200, {"data": {"account": account.as_json(), "event": delivery.event}})


# -- the HTTP server --------------------------------------------------------------------


@dataclass(frozen=True)
class RequestRecord:
    """One request the server answered (never the key, the body or the hosted state)."""

    method: str
    path: str
    status: int | None  # None: the connection was reset
    authorized: bool  # the Authorization header carried the fake's API key


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: every answer carries Content-Length
    server_version = "FakeUniPost/1"
    sys_version = ""
    timeout = 60  # an idle keep-alive connection is closed after this many seconds
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without TCP_NODELAY, Nagle's algorithm
        # and the client's delayed ACK add ~40 ms to every answer on a kept-alive socket.
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        owner = self.server.owner
        parts = urlsplit(self.path)
        body = self._read_body()
        headers = {name: value for name, value in self.headers.items()}
        authorized = headers.get("Authorization", headers.get("authorization")) == (
            f"Bearer {owner.fake.api_key}"
        )
        try:
            if (parts.path or "/").startswith(CONTROL_PREFIX):
                answer = control_answer(owner, self.command, parts.path, parts.query, authorized, body)
            else:
                answer = owner.fake.handle(
                    self.command, parts.path or "/", query=parts.query, headers=headers, body=body
                )
        except (requests.RequestException, OSError) as exc:
            # An injected transport failure: answer nothing, reset the connection.
            owner._record(RequestRecord(self.command, parts.path, None, authorized))
            logger.info(
                "Fake UniPost: resetting the connection for %s %s (%s)",
                self.command,
                parts.path,
                type(exc).__name__,
            )
            self._reset()
            return
        except Exception:
            logger.exception("Fake UniPost crashed on %s %s", self.command, parts.path)
            self._answer(500, b"fake UniPost crashed; see its log", {"Content-Type": "text/plain"})
            owner._record(RequestRecord(self.command, parts.path, 500, authorized))
            return
        owner._record(RequestRecord(self.command, parts.path, answer.status, authorized))
        self._answer(answer.status, answer.body, answer.headers)

    def _answer(self, status: int, body: bytes, headers: Any) -> None:
        self.send_response(status)
        for name, value in dict(headers).items():
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _reset(self) -> None:
        """Close with SO_LINGER 0: the peer sees a TCP reset, not a polite end of stream."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()  # the descriptor closes when rfile/wfile let go of it
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.owner.verbose:
            sys.stderr.write(f"{self.address_string()} - {redact(format % args)}\n")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: FakeUniPostServer

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn); loopback needs none.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = super().get_request()
        self.owner._accepted(connection)
        return connection, address

    def shutdown_request(self, request: Any) -> None:
        self.owner._released(request)
        super().shutdown_request(request)


class FakeUniPostServer:
    """Serve ``fake`` on ``host:port`` (0: any free port) from a background thread.

    The fake's ``base_url`` and ``hosted_base_url`` are pointed at this server when it
    starts, so hosted URLs lead back here. With ``webhook_url``, webhooks go there.
    """

    def __init__(
        self,
        fake: FakeUniPost,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        webhook_url: str | None = None,
        webhook_delay: float = 1.0,
        verbose: bool = False,
    ) -> None:
        self.fake = fake
        self.host = host
        self.port = port
        self.verbose = verbose
        self.webhooks: WebhookSender | None = None
        if webhook_url:
            self.webhooks = WebhookSender(webhook_url, delay=webhook_delay)
            fake.on_webhook = self.webhooks
        self.connections_accepted = 0
        self.log: list[RequestRecord] = []
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._serving = False

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def bind(self) -> None:
        """Open the listening socket (``start`` does this for you)."""
        if self._httpd is not None:
            return
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        server_class = type("_BoundServer", (_Server,), {"address_family": family})
        self._httpd = server_class((self.host, self.port), _Handler)
        self._httpd.owner = self
        self.port = int(self._httpd.server_address[1])
        self.fake.base_url = self.fake.hosted_base_url = self.base_url

    def start(self) -> FakeUniPostServer:
        self.bind()
        assert self._httpd is not None
        self._serving = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="fake-unipost-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until :meth:`stop` (from another thread) or a signal."""
        self.bind()
        assert self._httpd is not None
        self._serving = True
        try:
            self._httpd.serve_forever(poll_interval=0.1)
        finally:
            self._serving = False
            self._close()

    def stop(self) -> None:
        """Stop accepting, drop open keep-alive connections, close the socket."""
        httpd = self._httpd
        if httpd is None:
            return
        if self._serving:
            self._serving = False
            httpd.shutdown()  # returns once serve_forever has left its loop
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        self._close()

    def _close(self) -> None:
        with self._lock:
            httpd, self._httpd = self._httpd, None
            connections = list(self._open)
        if httpd is None:
            return
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        httpd.server_close()

    def __enter__(self) -> FakeUniPostServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def reset_counters(self) -> None:
        with self._lock:
            self.connections_accepted = 0
            self.log.clear()

    def _accepted(self, connection: socket.socket) -> None:
        with self._lock:
            self.connections_accepted += 1
            self._open.add(connection)

    def _released(self, connection: socket.socket) -> None:
        with self._lock:
            self._open.discard(connection)

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self.log.append(record)


# -- command line ----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m unipost_connect.testing.server",
        description="Serve a fake UniPost Connect API and hosted page over HTTP.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001, help="0 picks a free port")
    parser.add_argument("--api-key", default="up_test_fake", help="the key clients must send")
    parser.add_argument("--webhook-secret", default="whsec_fake", help="signs the webhooks")
    parser.add_argument("--webhook-url", default="", help="where to POST webhooks (none: not sent)")
    parser.add_argument("--webhook-delay", type=float, default=1.0, help="seconds before delivery")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every answer")
    parser.add_argument(
        "--profile",
        action="append",
        dest="profiles",
        metavar="ID",
        help="a profile of the workspace (repeat for several; default pr_default)",
    )
    parser.add_argument("--no-envelope", action="store_true", help="answer without the data envelope")
    parser.add_argument("--verbose", "-v", action="store_true", help="log each request (state redacted)")
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    fake = FakeUniPost(
        api_key=args.api_key,
        webhook_secret=args.webhook_secret,
        profiles=tuple(args.profiles or ("pr_default",)),
        envelope=not args.no_envelope,
        latency=max(0.0, args.latency_ms) / 1000.0,
    )
    server = FakeUniPostServer(
        fake,
        args.host,
        args.port,
        webhook_url=args.webhook_url or None,
        webhook_delay=args.webhook_delay,
        verbose=args.verbose,
    )
    try:
        server.bind()
    except OSError as exc:
        parser.exit(2, f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}\n")

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    target = f", webhooks to {args.webhook_url}" if args.webhook_url else ""
    print(f"Fake UniPost listening on {server.base_url}{target}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    print("Fake UniPost stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
