"""Bench 2: TCP connections the fake UniPost accepts over 200 sequential creates.

Three ways of making the same ``POST /v1/connect/sessions`` 200 times against the fake
served over real HTTP on loopback (in this process, so its accept counter can be read):

* ``UniPostClient``: one client (its pooled ``requests.Session``), as the app uses it;
* the start view: 200 ``POST unipost_connect:start`` through Django's test Client
  (the app's shared client from ``get_client()``);
* naive: ``requests.post(...)`` per call (a new connection every time).

Rounds alternate the order; the counts are the same every round, the time per call is
the median over rounds.

    .venv/bin/python bench/connection_reuse.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import API_KEY, machine_note, median, ok, setup_django, spread, table, test_database


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import requests

    from unipost_connect.client import UniPostClient
    from unipost_connect.testing import FakeUniPost
    from unipost_connect.testing.server import FakeUniPostServer

    server = FakeUniPostServer(FakeUniPost(api_key=API_KEY), "127.0.0.1", 0).start()
    try:
        setup_django(BENCH_API_BASE_URL=server.base_url)
        from django.contrib.auth import get_user_model
        from django.test import Client

        from unipost_connect.models import ConnectSession

        payload = {"platform": "linkedin", "external_user_id": "u1", "return_url": "http://127.0.0.1/r/"}

        def via_client() -> None:
            client = UniPostClient(API_KEY, server.base_url)
            for _ in range(args.calls):
                client.create_session(**payload)
            client.http.close()

        def via_view() -> None:
            for _ in range(args.calls):
                answer = django_client.post("/unipost/connect/", {"platform": "linkedin"})
                assert answer.status_code == 302, answer.status_code
                ConnectSession.objects.filter(status="pending").update(status="expired")

        def naive() -> None:
            for _ in range(args.calls):
                answer = requests.post(
                    server.base_url + "/v1/connect/sessions",
                    json=payload,
                    headers={"Authorization": f"Bearer {API_KEY}"},
                    timeout=10,
                )
                assert answer.status_code == 201, answer.status_code

        with test_database():
            user = get_user_model().objects.create_user("bench", password="x")
            django_client = Client()
            django_client.force_login(user)
            django_client.post("/unipost/connect/", {"platform": "linkedin"})  # the shared client exists
            ConnectSession.objects.all().delete()
            ways = [
                ("UniPostClient", via_client),
                ("start view (get_client)", via_view),
                ("naive requests.post", naive),
            ]
            conns: dict[str, list[int]] = {name: [] for name, _ in ways}
            per_call: dict[str, list[float]] = {name: [] for name, _ in ways}
            for r in range(args.rounds):
                for name, way in ways if r % 2 == 0 else list(reversed(ways)):
                    time.sleep(0.2)  # let the previous way's closed sockets be counted off
                    server.reset_counters()
                    started = time.perf_counter()
                    way()
                    per_call[name].append((time.perf_counter() - started) / args.calls * 1000)
                    conns[name].append(server.connections_accepted)
    finally:
        server.stop()

    rows = []
    for name, _ in ways:
        worst = max(conns[name])
        target = "≤ 2" if name != "naive requests.post" else "(reference)"
        verdict = ok(worst <= 2) if name != "naive requests.post" else "-"
        rows.append(
            [
                name,
                args.calls,
                worst,
                spread(conns[name]),
                median(per_call[name]),
                spread(per_call[name]),
                target,
                verdict,
            ]
        )
    base = median(per_call["naive requests.post"])
    print(
        table(
            ["way", "creates", "connections", "spread", "ms/call", "spread", "target", ""],
            rows,
            title=f"Connections accepted by the fake over {args.calls} sequential creates "
            f"({args.rounds} rounds)",
        )
    )
    print("connections: new TCP connections per run of 200 (the start view's shared client was")
    print("opened by one request before the first run, as it is on a live site).")
    print(f"UniPostClient time per call vs naive: {median(per_call['UniPostClient']) / base:.2f}x")


if __name__ == "__main__":
    main()
    print(machine_note())
