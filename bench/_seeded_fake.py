"""A standalone fake UniPost pre-loaded with N sessions (for bench/reconcile_scaling.py).

Session ``i`` is ``cs_bench_{i}``: completed when i % 4 == 0 (account ``sa_bench_{i}``),
cancelled when i % 4 == 1, pending otherwise; all created at ``--created-at`` and
expiring at ``--expires-at``. Prints ``Fake UniPost listening on <url>`` and serves until
SIGTERM.

    .venv/bin/python bench/_seeded_fake.py --sessions 1000 --latency-ms 20
"""

from __future__ import annotations

import argparse
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def session_status(i: int) -> str:
    return ("completed", "cancelled", "pending", "pending")[i % 4]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default="up_test_bench")
    parser.add_argument("--webhook-secret", default="whsec_bench")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--sessions", type=int, default=1000)
    now = datetime.now(UTC).replace(microsecond=0)
    parser.add_argument("--created-at", default=(now - timedelta(minutes=10)).isoformat())
    parser.add_argument("--expires-at", default=(now + timedelta(minutes=20)).isoformat())
    args = parser.parse_args()

    from unipost_connect.testing import FakeUniPost
    from unipost_connect.testing.fake import FakeSession

    fake = FakeUniPost(
        api_key=args.api_key, webhook_secret=args.webhook_secret, latency=args.latency_ms / 1000
    )
    created = datetime.fromisoformat(args.created_at)
    expires = datetime.fromisoformat(args.expires_at)
    for i in range(args.sessions):
        status = session_status(i)
        fake.sessions[f"cs_bench_{i}"] = FakeSession(
            id=f"cs_bench_{i}",
            platform="linkedin",
            external_user_id=f"ext_{i % 1000}",
            state="s",
            url=f"http://{args.host}/connect/linkedin?session=cs_bench_{i}&state=s",
            created_at=created,
            expires_at=expires,
            status=status,
            completed_at=created + timedelta(minutes=1) if status == "completed" else None,
            managed_account_id=f"sa_bench_{i}" if status == "completed" else None,
        )
    serve(fake, args.host, args.port)


def serve(fake: Any, host: str, port: int) -> None:
    """Serve ``fake`` (a FakeUniPost) until SIGTERM or Ctrl-C, keeping no per-request log."""
    from unipost_connect.testing.server import FakeUniPostServer

    # The request log would grow with every call; this is a bench, not a test.
    fake.requests = _Discard()
    server = FakeUniPostServer(fake, host, port)
    server.log = _Discard()
    server.bind()

    def on_signal(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    print(f"Fake UniPost listening on {server.base_url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


class _Discard(list):  # type: ignore[type-arg]
    def append(self, item: Any) -> None:
        pass


if __name__ == "__main__":
    main()
