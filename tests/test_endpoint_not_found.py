"""A wrong API_BASE_URL: a 404 that is not UniPost's is a configuration error, never "already gone"."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import TestCase

from unipost_connect import services
from unipost_connect.errors import AuthenticationError, EndpointNotFoundError, NotFoundError
from unipost_connect.models import ConnectedAccount
from unipost_connect.testing import FakeUniPost
from unipost_connect.user_messages import message_for_error

pytestmark = pytest.mark.django_db

# What the live server's router answers for a route it does not have.
ROUTE_404 = {"body": "404 page not found", "headers": {"Content-Type": "text/plain; charset=utf-8"}}


def make_account(user: Any) -> ConnectedAccount:
    return ConnectedAccount.objects.create(
        user=user, platform="linkedin", managed_account_id="sa_linkedin_1", external_user_id=str(user.pk)
    )


def test_disconnect_through_a_wrong_endpoint_raises_and_keeps_the_account(
    fake: FakeUniPost, user: Any, sent: Any
) -> None:
    account = make_account(user)
    fake.fail_next("delete", 404, **ROUTE_404)
    with TestCase.captureOnCommitCallbacks(execute=True):
        with pytest.raises(EndpointNotFoundError):
            services.disconnect_account(account)
    account.refresh_from_db()
    assert account.status == ConnectedAccount.Status.ACTIVE
    assert account.disconnected_at is None
    assert sent.named("account_disconnected") == []


def test_disconnect_of_an_account_unipost_no_longer_has_still_marks_it(
    fake: FakeUniPost, user: Any, sent: Any
) -> None:
    account = make_account(user)  # unknown to the fake: its JSON 404 NOT_FOUND
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert services.disconnect_account(account) is True
    account.refresh_from_db()
    assert account.status == ConnectedAccount.Status.DISCONNECTED
    assert len(sent.named("account_disconnected")) == 1


def test_wrong_endpoint_tells_the_user_the_site_is_misconfigured() -> None:
    error = EndpointNotFoundError("no endpoint", status=404)
    text = message_for_error(error, platform="linkedin")
    assert text == message_for_error(AuthenticationError("bad key", status=401))
    assert text.startswith("The connection service is misconfigured on this site.")
    assert text != message_for_error(NotFoundError("gone", status=404))


def test_the_disconnect_button_through_a_wrong_endpoint_says_the_site_is_misconfigured(
    fake: FakeUniPost, user: Any, user_client: Any
) -> None:
    from django.contrib.messages import get_messages
    from django.urls import reverse

    account = make_account(user)
    fake.fail_next("delete", 404, **ROUTE_404)
    answer = user_client.post(reverse("unipost_connect:disconnect", kwargs={"account_id": account.pk}))
    assert answer.status_code == 302
    assert [str(m) for m in get_messages(answer.wsgi_request)] == [
        "The connection service is misconfigured on this site. Please contact the site's support."
    ]
    account.refresh_from_db()
    assert account.status == ConnectedAccount.Status.ACTIVE
