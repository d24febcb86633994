"""Bench 7: inserting a new account inside a transaction, the two ways db.py offers.

``upsert_account`` runs inside the transaction that completes a session (or applies a
webhook), and several workers may insert the same account at once, so the insert must
report who won without breaking the transaction. Two ways:

* raw: ``db.insert_unless_conflict``, one ``INSERT … ON CONFLICT DO NOTHING RETURNING``;
* orm: ``db.insert_unless_constrained``, ``save()`` inside a savepoint that catches the
  IntegrityError (SAVEPOINT, INSERT, RELEASE).

Each round times N transactions of each kind (new accounts, and as many conflicting
ones), the two sides alternating which goes first; the ratio is orm / raw per round.

    scripts/with-postgres .venv/bin/python bench/account_insert.py
    .venv/bin/python bench/account_insert.py --rows 500 --rounds 3       # SQLite in memory
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import machine_note, median, setup_django, table, test_database


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2000, help="transactions per side and round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    setup_django()
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from unipost_connect.db import insert_unless_conflict, insert_unless_constrained
    from unipost_connect.models import ConnectedAccount

    with test_database():
        user = get_user_model().objects.create_user("bench")

        def run(insert: Callable[[ConnectedAccount], bool], ids: list[str]) -> float:
            started = time.perf_counter()
            for account_id in ids:
                with transaction.atomic():
                    account = ConnectedAccount(user=user, managed_account_id=account_id, platform="linkedin")
                    insert(account)
            return time.perf_counter() - started

        rows = []
        for round_ in range(args.rounds):
            sides = [("raw", insert_unless_conflict), ("orm", insert_unless_constrained)]
            if round_ % 2:
                sides.reverse()
            seconds: dict[str, dict[str, float]] = {}
            for name, insert in sides:
                fresh = [f"{name}-{uuid.uuid4()}" for _ in range(args.rows)]
                seconds[name] = {"new": run(insert, fresh), "conflict": run(insert, fresh)}
            rows.append(
                [
                    round_ + 1,
                    seconds["raw"]["new"] * 1000 / args.rows,
                    seconds["orm"]["new"] * 1000 / args.rows,
                    seconds["orm"]["new"] / seconds["raw"]["new"],
                    seconds["raw"]["conflict"] * 1000 / args.rows,
                    seconds["orm"]["conflict"] * 1000 / args.rows,
                    seconds["orm"]["conflict"] / seconds["raw"]["conflict"],
                ]
            )
        vendor = connection.vendor
    headers = [
        "round",
        "raw new ms",
        "orm new ms",
        "orm/raw",
        "raw conflict ms",
        "orm conflict ms",
        "orm/raw",
    ]
    print(table(headers, rows, title=f"Account insert inside a transaction ({vendor}, {args.rows} per side)"))
    new, conflicting = median([r[3] for r in rows]), median([r[6] for r in rows])
    print(f"median orm/raw: new {new:.2f}, conflicting {conflicting:.2f}")


if __name__ == "__main__":
    main()
    print(machine_note())
