"""Bench 3: database queries per request, counted as a real request makes them.

In-process Django test Client against the fake UniPost served over real HTTP on
loopback (in this process). Counts include the two queries the middleware makes for a
logged-in user (its ``django_session`` row and its ``auth_user`` row); the webhook has
no user. BEGIN/COMMIT/SAVEPOINT/RELEASE count (each is a round trip); a second column
leaves them out. The admin changelists are counted with
10 and with 1,000 rows in the table.

    .venv/bin/python bench/queries.py                        # SQLite
    scripts/with-postgres .venv/bin/python bench/queries.py  # PostgreSQL
    .venv/bin/python bench/queries.py --sql                  # also print every statement
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import API_KEY, WEBHOOK_SECRET, machine_note, ok, setup_django, table, test_database


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sql", action="store_true", help="print the statements of each case")
    args = parser.parse_args()

    from unipost_connect.testing import FakeUniPost
    from unipost_connect.testing.server import FakeUniPostServer

    fake = FakeUniPost(api_key=API_KEY, webhook_secret=WEBHOOK_SECRET)
    server = FakeUniPostServer(fake, "127.0.0.1", 0).start()
    try:
        setup_django(BENCH_API_BASE_URL=server.base_url)
        with test_database():
            rows = measure(fake, args.sql)
    finally:
        server.stop()
    from django.db import connection

    print(
        table(
            ["request", "queries", "w/o txn control", "target", "queries", "w/o txn control"],
            rows,
            title=f"Queries per request ({connection.vendor}; includes the 2 middleware queries "
            "for a logged-in user)",
        )
    )


def _is_transaction_control(sql: str) -> bool:
    word = sql.lstrip().split(" ", 1)[0].upper()
    return word in ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


def measure(fake: Any, show_sql: bool) -> list[list[Any]]:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from unipost_connect.models import ConnectedAccount, ConnectSession, WebhookEvent

    User = get_user_model()
    user = User.objects.create_user("alice", password="x")
    client = Client()
    client.force_login(user)
    rows: list[list[Any]] = []

    def count(label: str, target: int | None, call: Any, expect: int) -> int:
        with CaptureQueriesContext(connection) as queries:
            answer = call()
        assert answer.status_code == expect, (label, answer.status_code, answer.content[:200])
        n = len(queries)
        control = sum(1 for q in queries.captured_queries if _is_transaction_control(q["sql"]))
        rows.append(
            [
                label,
                n,
                n - control,
                f"≤ {target}" if target else "-",
                ok(n <= target) if target else "-",
                ok(n - control <= target) if target else "-",
            ]
        )
        if show_sql:
            print(f"-- {label}: {n}")
            for q in queries.captured_queries:
                print("   ", q["sql"][:160])
        return n

    def start(platform: str) -> Any:
        return client.post("/unipost/connect/", {"platform": platform})

    def session_of(platform: str) -> ConnectSession:
        return ConnectSession.objects.filter(platform=platform).latest("created_at")

    def path_of(url: str) -> str:
        parts = urlsplit(url)
        return parts.path + ("?" + parts.query if parts.query else "")

    def webhook(delivery: Any) -> Any:
        return client.post("/unipost/webhook/", **delivery.django_client_kwargs())

    # start: a new session, then the same button again (reuses the pending session)
    count("start (new session)", 5, lambda: start("linkedin"), 302)
    count("start (reuses the pending session)", 5, lambda: start("linkedin"), 302)

    # return that completes the session (the webhook not yet in)
    s = session_of("linkedin")
    back = fake.approve(s.unipost_session_id)
    count("return, completing", 6, lambda: client.get(path_of(back)), 302)
    completed_delivery = fake.outbox[-1]
    count("webhook, echo of a return-completed session", 6, lambda: webhook(completed_delivery), 200)

    # webhook that completes the session (the user has not come back yet)
    start("twitter")
    s = session_of("twitter")
    back = fake.approve(s.unipost_session_id)
    delivery = fake.outbox[-1]
    count("webhook, completing", 6, lambda: webhook(delivery), 200)
    count("webhook, duplicate delivery", 6, lambda: webhook(delivery), 200)
    count("return, after the webhook completed it", 6, lambda: client.get(path_of(back)), 302)

    # return of a cancelled session
    start("youtube")
    back = fake.deny(session_of("youtube").unipost_session_id)
    count("return, cancelled", 6, lambda: client.get(path_of(back)), 302)

    # webhook for a user this site does not know
    stranger = fake.webhook(
        "account.connected",
        {
            "social_account_id": "sa_x",
            "platform": "linkedin",
            "external_user_id": "nobody",
            "connection_type": "managed",
            "account_name": "x",
            "profile_id": "pr_default",
        },
    )
    count("webhook, unknown user", 6, lambda: webhook(stranger), 200)
    count("connections page", None, lambda: client.get("/unipost/connections/"), 200)

    # admin changelists at 10 and 1,000 rows
    admin = User.objects.create_superuser("admin", "admin@example.com", "x")
    staff = Client()
    staff.force_login(admin)
    users = User.objects.bulk_create(User(username=f"u{i}", password="!") for i in range(20))
    lists = {
        "sessions": "/admin/unipost_connect/connectsession/",
        "accounts": "/admin/unipost_connect/connectedaccount/",
        "webhook events": "/admin/unipost_connect/webhookevent/",
    }
    figures: dict[str, list[int]] = {name: [] for name in lists}
    made = 0
    now = timezone.now()
    for target_rows in (10, 1000):
        for model in (ConnectSession, ConnectedAccount, WebhookEvent):
            model.objects.all().delete()
        ConnectSession.objects.bulk_create(
            ConnectSession(
                user=users[i % 20],
                platform="linkedin",
                external_user_id=str(users[i % 20].pk),
                unipost_session_id=f"cs_q{made + i}",
                status=["pending", "completed", "expired"][i % 3],
                created_at=now - timedelta(minutes=i),
                expires_at=now + timedelta(minutes=30),
            )
            for i in range(target_rows)
        )
        ConnectedAccount.objects.bulk_create(
            ConnectedAccount(
                user=users[i % 20],
                platform="linkedin",
                managed_account_id=f"sa_q{made + i}",
                account_name=f"Account {i}",
            )
            for i in range(target_rows)
        )
        WebhookEvent.objects.bulk_create(
            WebhookEvent(event_key=f"evt_q{made + i}", event_type="account.connected", payload={"i": i})
            for i in range(target_rows)
        )
        made += target_rows
        for name, url in lists.items():
            with CaptureQueriesContext(connection) as queries:
                answer = staff.get(url)
            assert answer.status_code == 200, (url, answer.status_code)
            figures[name].append(len(queries))
    for name, (small, large) in figures.items():
        rows.append(
            [
                f"admin {name} changelist, 10 → 1,000 rows",
                f"{small} → {large}",
                "",
                "constant",
                ok(small == large),
                "",
            ]
        )
    return rows


if __name__ == "__main__":
    main()
    print(machine_note())
