"""No request answers 5xx, whatever UniPost answers: Hypothesis properties of the start,
return and webhook views against arbitrary answers from the API.

``HYPOTHESIS_PROFILE=thorough`` runs many more examples.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import SESSION_FIELDS, URL, start
from unipost_connect.models import ConnectSession
from unipost_connect.testing import FakeUniPost

EXAMPLES = 1500 if os.environ.get("HYPOTHESIS_PROFILE") == "thorough" else 60
VIEW_FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

odd_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "completed",
            "pending",
            "cancelled",
            "expired",
            "Completed",
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59-14:00",
            "https://app.unipost.test/connect/linkedin?session=x&state=y",
            "javascript:alert(1)",
            "\x00",
            "x" * 3000,
        ]
    ),
)
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), odd_text)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(odd_text, inner, max_size=3)
)
sessions = st.dictionaries(st.sampled_from(SESSION_FIELDS), values, max_size=len(SESSION_FIELDS))
bodies = st.one_of(
    st.builds(lambda data, rid: {"data": data, "request_id": rid}, sessions, values),
    sessions,
    st.builds(lambda error, rid: {"error": error, "request_id": rid}, values, values),
    values,
)
raw_bodies = st.one_of(bodies.map(lambda b: json.dumps(b).encode()), st.binary(max_size=200))
statuses = st.sampled_from([200, 201, 202, 204, 302, 400, 401, 402, 404, 409, 410, 422, 429, 500, 502, 503])
headers = st.dictionaries(
    st.sampled_from(["X-Request-Id", "Retry-After", "Content-Type"]),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=300),
    max_size=3,
)


@pytest.mark.django_db
@VIEW_FUZZ
@given(status=statuses, body=raw_bodies, extra=headers)
def test_the_start_view_never_answers_5xx(
    fake: FakeUniPost, user: Any, status: int, body: bytes, extra: dict[str, str]
) -> None:
    ConnectSession.objects.all().delete()
    client = Client()
    client.force_login(user)
    fake.fail_next("create", status, body=body, headers=extra)
    answer = client.post(reverse("unipost_connect:start"), {"platform": "linkedin"})
    assert answer.status_code == 302
    row = ConnectSession.objects.get()
    assert row.status in ("pending", "failed")
    if row.status == "failed":
        assert row.error_code
    else:
        assert row.url and row.unipost_session_id


@pytest.mark.django_db
@VIEW_FUZZ
@given(status=statuses, body=raw_bodies, extra=headers)
def test_the_return_view_never_answers_5xx(
    fake: FakeUniPost, user: Any, status: int, body: bytes, extra: dict[str, str]
) -> None:
    ConnectSession.objects.all().delete()
    session = start(user)
    client = Client()
    client.force_login(user)
    fake.fail_next("get", status, body=body, headers=extra)
    answer = client.get(reverse("unipost_connect:return", kwargs={"session_id": session.pk}))
    assert answer.status_code == 302
    assert ConnectSession.objects.filter(pk=session.pk).exists()


@pytest.mark.django_db
@VIEW_FUZZ
@given(status=statuses, body=raw_bodies, extra=headers)
def test_the_webhook_never_answers_5xx_for_what_its_confirming_read_gets(
    fake: FakeUniPost, user: Any, status: int, body: bytes, extra: dict[str, str]
) -> None:
    ConnectSession.objects.all().delete()
    session = start(user)
    fake.approve(session.unipost_session_id or "")
    fake.fail_next("get", status, body=body, headers=extra)
    answer = Client().post(URL, **fake.outbox[-1].django_client_kwargs())
    assert answer.status_code == 200
