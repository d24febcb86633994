from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from tests.helpers import SignalLog, record_signals
from unipost_connect.testing import FakeUniPost


@pytest.fixture
def fake() -> Iterator[FakeUniPost]:
    """A fake UniPost answering for tests.settings' base URL and key; no sleeping on retries."""
    fake = FakeUniPost(
        api_key="up_test_key",
        base_url="https://api.unipost.test",
        hosted_base_url="https://app.unipost.test",
        webhook_secret="whsec_test",
    )
    with fake.mock():
        yield fake


@pytest.fixture(autouse=True)
def _no_retry_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("unipost_connect.client._sleep", lambda seconds: None)


@pytest.fixture
def user(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("alex", "alex@example.com", "pw")


@pytest.fixture
def other_user(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("blake", "blake@example.com", "pw")


@pytest.fixture
def user_client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def csrf_client(user: Any) -> Client:
    """A logged-in client that enforces CSRF like a browser would."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


@pytest.fixture
def sent() -> Iterator[SignalLog]:
    """Every signal the app sends during the test, in order."""
    with record_signals() as log:
        yield log
