"""Query budgets of the user-facing views, counted as a real request makes them.

The budgets include the two queries the middleware makes for a logged-in user (the
``django_session`` row and the ``auth_user`` row); messages use the cookie storage and
add none. Savepoints count: each is a round trip to the database.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from unipost_connect.models import ConnectedAccount, ConnectSession
from unipost_connect.platforms import ALL_PLATFORMS

# A new session: the insert that claims the target, the look-up for a session to reuse
# (after the insert, see unipost_connect.start._claim_start) and UniPost's answer. A
# reuse: the same insert and look-up, then the DELETE of the row it did not need.
START_BUDGET = 5
RETURN_BUDGET = 6
CONNECTIONS_BUDGET = 4


def start(client: Client, platform: str = "linkedin") -> Any:
    return client.post(reverse("unipost_connect:start"), {"platform": platform})


def get(client: Client, url: str) -> Any:
    parts = urlsplit(url)
    return client.get(parts.path + ("?" + parts.query if parts.query else ""))


# The start view runs outside a transaction (non_atomic_requests), as it does in
# production: measured so, its inserts need no savepoints.
@pytest.mark.django_db(transaction=True)
def test_start(fake, user_client, django_assert_max_num_queries):
    with django_assert_max_num_queries(START_BUDGET):
        answer = start(user_client)
    assert answer.status_code == 302
    assert ConnectSession.objects.get().status == ConnectSession.Status.PENDING


@pytest.mark.django_db(transaction=True)
def test_start_that_reuses_a_pending_session(fake, user_client, django_assert_max_num_queries):
    start(user_client)
    with django_assert_max_num_queries(START_BUDGET):
        answer = start(user_client)
    assert answer.status_code == 302


@pytest.mark.django_db(transaction=True)
def test_start_that_fails(fake, user_client, django_assert_max_num_queries):
    fake.fail_next("create", 500)
    with django_assert_max_num_queries(START_BUDGET + 1):
        answer = start(user_client)
    assert answer.status_code == 302
    assert ConnectSession.objects.get().status == ConnectSession.Status.FAILED


@pytest.mark.django_db
def test_completing_return(fake, user_client, django_assert_max_num_queries):
    start(user_client)
    session = ConnectSession.objects.get()
    back = fake.approve(session.unipost_session_id)
    with django_assert_max_num_queries(RETURN_BUDGET):
        answer = get(user_client, back)
    assert answer.status_code == 302
    session.refresh_from_db()
    assert session.status == ConnectSession.Status.COMPLETED
    assert ConnectedAccount.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("outcome", ["deny", "error"])
def test_return_that_does_not_complete(fake, user_client, django_assert_max_num_queries, outcome):
    start(user_client)
    session = ConnectSession.objects.get()
    back = getattr(fake, outcome)(session.unipost_session_id)
    with django_assert_max_num_queries(RETURN_BUDGET):
        answer = get(user_client, back)
    assert answer.status_code == 302


def connections_queries(client: Client) -> int:
    with CaptureQueriesContext(connection) as queries:
        answer = client.get(reverse("unipost_connect:connections"))
    assert answer.status_code == 200
    return len(queries)


@pytest.mark.django_db
def test_connections_page_is_constant_in_the_number_of_accounts(user, user_client):
    ConnectedAccount.objects.create(user=user, platform="linkedin", managed_account_id="sa_first")
    one = connections_queries(user_client)
    for n in range(30):
        ConnectedAccount.objects.create(
            user=user,
            platform=ALL_PLATFORMS[n % len(ALL_PLATFORMS)],
            managed_account_id=f"sa_{n}",
            account_name=f"Account {n}",
            status=[
                ConnectedAccount.Status.ACTIVE,
                ConnectedAccount.Status.DISCONNECTED,
                ConnectedAccount.Status.RECONNECT_REQUIRED,
            ][(n // len(ALL_PLATFORMS)) % 3],
        )
        ConnectSession.objects.create(
            user=user, platform="linkedin", external_user_id=str(user.pk), unipost_session_id=f"cs_{n}"
        )
    many = connections_queries(user_client)
    assert many == one
    assert many <= CONNECTIONS_BUDGET
    html = user_client.get(reverse("unipost_connect:connections")).content.decode()
    # Every platform has an account needing a reconnect: each card's button says so.
    assert len(re.findall(r">Reconnect [^<]+</button>", html)) == len(ALL_PLATFORMS)


@pytest.mark.django_db
def test_connections_page_with_no_accounts(user_client, django_assert_max_num_queries):
    with django_assert_max_num_queries(CONNECTIONS_BUDGET):
        user_client.get(reverse("unipost_connect:connections"))
