"""Corners of the Python API that the flow tests do not reach."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ImproperlyConfigured
from django.test import RequestFactory

from unipost_connect import services
from unipost_connect.testing import FakeUniPost

SESSION_ID = uuid.UUID("12345678-1234-5678-1234-567812345678")


def test_return_url_uses_return_base_url_over_the_request(settings: Any) -> None:
    settings.UNIPOST_CONNECT = {**settings.UNIPOST_CONNECT, "RETURN_BASE_URL": "https://www.example.com/"}
    request = RequestFactory().get("/", HTTP_HOST="internal:8000")
    url = services.build_return_url(SESSION_ID, request)
    assert url == f"https://www.example.com/unipost/return/{SESSION_ID}/"


def test_return_url_from_the_request() -> None:
    url = services.build_return_url(SESSION_ID, RequestFactory().get("/"))
    assert url == f"http://testserver/unipost/return/{SESSION_ID}/"


def test_return_url_without_request_or_base_url_names_the_setting() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"RETURN_BASE_URL"):
        services.build_return_url(SESSION_ID)


@pytest.mark.django_db
def test_anonymous_user_has_no_sessions(user: Any, fake: FakeUniPost) -> None:
    services.start_session(user, "linkedin", request=RequestFactory().get("/"))
    assert len(services.user_sessions(user)) == 1
    assert services.user_sessions(AnonymousUser()) == []


@pytest.mark.django_db
def test_user_sessions_newest_first_and_limited(user: Any, other_user: Any, fake: FakeUniPost) -> None:
    request = RequestFactory().get("/")
    first = services.start_session(user, "linkedin", request=request)
    second = services.start_session(user, "bluesky", request=request)
    services.start_session(other_user, "linkedin", request=request)
    assert services.user_sessions(user) == [second, first]
    assert services.user_sessions(user, limit=1) == [second]
