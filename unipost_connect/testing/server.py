"""A :class:`~unipost_connect.testing.FakeUniPost` served over real HTTP, on its own.

From a shell (serves until Ctrl-C or SIGTERM; ``--help`` lists every option and its
default)::

    python -m unipost_connect.testing.server --port 8001 \\
        --webhook-url http://127.0.0.1:8000/unipost/webhook/

On start it prints its base URL, the API key it accepts, the secret it signs webhooks
with, where it sends them (or that it sends none, and which option sets the target),
and the ``export`` line for a site whose settings read ``UNIPOST_API_BASE_URL``,
``UNIPOST_API_KEY`` and ``UNIPOST_WEBHOOK_SECRET`` (the README's Quickstart). The key and
secret are printed when they are the fake's defaults (``up_test_fake``, ``whsec_fake``),
which a user could not otherwise know; ones given with ``--api-key`` or
``--webhook-secret`` are the user's own and are not echoed.

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
``DELETE``, ``fake.fail_token_refresh(...)``) is POSTed to ``webhook_url`` by the
delivery policy the live demo uses too (:class:`~.delivery.WebhookSender`: after
``webhook_delay`` seconds, with UniPost's retries). Under ``/_fake/`` it also serves
fake-only test-control routes (:mod:`.control`). With ``hosted_coop`` (``--hosted-coop``)
the hosted page answers with that ``Cross-Origin-Opener-Policy``, as UniPost's page (or a
provider's) may, so a popup flow can be tested cut off from its opener.

Nothing here logs an API key or secret given to it, request bodies or the hosted page's
``state``.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import signal
import socket
import socketserver
import struct
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

import requests

from ..redaction import redact_state
from . import control
from .delivery import DELIVERY_DELAY, WebhookSender
from .fake import DEFAULT_API_KEY, DEFAULT_PROFILES, DEFAULT_WEBHOOK_SECRET, FakeUniPost
from .hosted import with_opener_policy

logger = logging.getLogger("unipost_connect.testing")


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
            if (parts.path or "/").startswith(control.CONTROL_PREFIX):
                answer = control.answer(
                    owner.fake, owner.webhooks, self.command, parts.path, parts.query, authorized, body
                )
            else:
                answer = owner.fake.handle(
                    self.command, parts.path or "/", query=parts.query, headers=headers, body=body
                )
                answer = with_opener_policy(parts.path, answer, owner.hosted_coop)
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
            sys.stderr.write(f"{self.address_string()} - {redact_state(format % args)}\n")


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
        webhook_delay: float = DELIVERY_DELAY,
        hosted_coop: str | None = None,
        verbose: bool = False,
    ) -> None:
        self.fake = fake
        self.hosted_coop = hosted_coop
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


def _parser() -> argparse.ArgumentParser:
    # Every option's help names its default, so --help is the whole reference.
    parser = argparse.ArgumentParser(
        prog="python -m unipost_connect.testing.server",
        description="Serve a fake UniPost Connect API and hosted page over HTTP.",
        epilog=(
            "On start it prints its base URL, the API key it accepts, the webhook secret, where "
            "webhooks go, and the export line for a site whose settings read UNIPOST_API_BASE_URL, "
            "UNIPOST_API_KEY and UNIPOST_WEBHOOK_SECRET."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on (default: %(default)s)")
    parser.add_argument(
        "--port",
        type=int,
        default=8001,
        help="the port to listen on; 0 picks a free one (default: %(default)s)",
    )
    parser.add_argument(
        "--api-key",
        default=DEFAULT_API_KEY,
        help="the key clients must send as 'Authorization: Bearer <key>' (default: %(default)s)",
    )
    parser.add_argument(
        "--webhook-secret",
        default=DEFAULT_WEBHOOK_SECRET,
        help="the secret webhooks are signed with (default: %(default)s)",
    )
    parser.add_argument(
        "--webhook-url",
        default="",
        metavar="URL",
        help="where to POST the webhooks, e.g. http://127.0.0.1:8000/unipost/webhook/ "
        "(default: none, so no webhooks are sent)",
    )
    parser.add_argument(
        "--webhook-delay",
        type=float,
        default=DELIVERY_DELAY,
        metavar="SECONDS",
        help="the pause between an event and its webhook (default: %(default)s)",
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        metavar="MS",
        help="milliseconds added to every answer (default: %(default)s)",
    )
    parser.add_argument(
        "--profile",
        action="append",
        dest="profiles",
        metavar="ID",
        help=f"a profile of the workspace; repeat for several (default: {' '.join(DEFAULT_PROFILES)})",
    )
    parser.add_argument(
        "--hosted-coop",
        default="",
        metavar="POLICY",
        help="send this Cross-Origin-Opener-Policy from the hosted page, e.g. same-origin "
        "(default: none is sent)",
    )
    parser.add_argument(
        "--no-envelope",
        action="store_true",
        help='answer without the {"data": ...} envelope (default: enveloped, as the live server answers)',
    )
    parser.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        help="log each request to stderr, the hosted state redacted (default: off)",
    )
    return parser


def banner(server: FakeUniPostServer) -> str:
    """What the command prints on start: where the fake is, what it accepts, where its
    webhooks go, and how a site is pointed at it. A key or secret is printed only when it
    is the fake's default; one the user gave is theirs, and is not echoed."""
    fake = server.fake
    key = fake.api_key if fake.api_key == DEFAULT_API_KEY else None
    secret = fake.webhook_secret if fake.webhook_secret == DEFAULT_WEBHOOK_SECRET else None
    if server.webhooks is not None:
        target = f"POSTed to {server.webhooks.url}, {server.webhooks.delay:g} s after each event"
    else:
        target = "none sent (--webhook-url http://<your site>/unipost/webhook/ sends them there)"
    lines = [
        f"Fake UniPost listening on {server.base_url}",
        f"  API key:         {key or '(the one given with --api-key; not echoed)'}",
        f"  webhook secret:  {secret or '(the one given with --webhook-secret; not echoed)'}",
        f"  webhooks:        {target}",
        f"  profiles:        {' '.join(fake.profiles)}",
    ]
    if server.hosted_coop:
        lines.append(f"  hosted page:     Cross-Origin-Opener-Policy: {server.hosted_coop}")
    exports = {
        "UNIPOST_API_BASE_URL": server.base_url,
        "UNIPOST_API_KEY": key or "<your --api-key>",
        "UNIPOST_WEBHOOK_SECRET": secret or "<your --webhook-secret>",
    }
    lines += [
        "Point a site at it (the README's Quickstart settings read these variables):",
        "  export " + " ".join(f"{name}={shlex.quote(value)}" for name, value in exports.items()),
        "Ctrl-C stops it.",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    fake = FakeUniPost(
        api_key=args.api_key,
        webhook_secret=args.webhook_secret,
        profiles=tuple(args.profiles or DEFAULT_PROFILES),
        envelope=not args.no_envelope,
        latency=max(0.0, args.latency_ms) / 1000.0,
    )
    server = FakeUniPostServer(
        fake,
        args.host,
        args.port,
        webhook_url=args.webhook_url or None,
        webhook_delay=args.webhook_delay,
        hosted_coop=args.hosted_coop or None,
        verbose=args.verbose,
    )
    try:
        server.bind()
    except OSError as exc:
        parser.exit(2, f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}\n")

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    print(banner(server), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    print("Fake UniPost stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
