"""A standalone fake UniPost pre-loaded with N completed sessions (bench/webhook_ingest_tasks.py).

Session ``i`` is ``cs_lat_{i}`` of external user ``ext_lat_{i}`` on LinkedIn, completed
with account ``sa_lat_{i}``, so a worker applying the matching ``account.connected``
event confirms it with one read. Prints ``Fake UniPost listening on <url>``; serves until
SIGTERM.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._seeded_fake import serve


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default="up_test_bench")
    parser.add_argument("--webhook-secret", default="whsec_bench")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--sessions", type=int, default=1000)
    args = parser.parse_args()

    from unipost_connect.testing import FakeUniPost
    from unipost_connect.testing.fake import FakeSession

    fake = FakeUniPost(
        api_key=args.api_key, webhook_secret=args.webhook_secret, latency=args.latency_ms / 1000
    )
    now = datetime.now(UTC).replace(microsecond=0)
    for i in range(args.sessions):
        fake.sessions[f"cs_lat_{i}"] = FakeSession(
            id=f"cs_lat_{i}",
            platform="linkedin",
            external_user_id=f"ext_lat_{i}",
            state="s",
            url=f"http://{args.host}/connect/linkedin?session=cs_lat_{i}&state=s",
            created_at=now - timedelta(minutes=1),
            expires_at=now + timedelta(minutes=29),
            status="completed",
            completed_at=now,
            managed_account_id=f"sa_lat_{i}",
        )
    serve(fake, args.host, args.port)


if __name__ == "__main__":
    main()
