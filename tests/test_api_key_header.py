"""An API key no HTTP header can carry (a zero-width space pasted with it): a check error,
a clean failure at start, and a client error that never quotes the key."""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages
from django.core.checks import Tags, run_checks
from django.test import Client, override_settings
from django.urls import reverse

from unipost_connect.client import UniPostClient
from unipost_connect.errors import AuthenticationError
from unipost_connect.models import ConnectSession

KEY_WITH_ZERO_WIDTH_SPACE = "up_live_abc\u200bdef"


def test_a_key_no_header_can_carry_is_a_check_error() -> None:
    with override_settings(UNIPOST_CONNECT={"API_KEY": KEY_WITH_ZERO_WIDTH_SPACE, "WEBHOOK_SECRET": "x"}):
        found = [m for m in run_checks(tags=[Tags.compatibility]) if m.id == "unipost_connect.E011"]
    assert len(found) == 1
    assert KEY_WITH_ZERO_WIDTH_SPACE not in found[0].msg + (found[0].hint or "")


@pytest.mark.django_db
def test_a_key_no_header_can_carry_fails_cleanly(user_client: Client) -> None:
    # Real HTTP (no mock): http.client refuses the header before any connection is made.
    config = {"API_KEY": KEY_WITH_ZERO_WIDTH_SPACE, "API_BASE_URL": "http://127.0.0.1:9"}
    with override_settings(UNIPOST_CONNECT=config):
        answer = user_client.post(reverse("unipost_connect:start"), {"platform": "linkedin"})
    assert answer.status_code == 302
    session = ConnectSession.objects.get()
    assert (session.status, session.error_code) == ("failed", "INVALID_API_KEY")
    assert "abc" not in session.error_message
    texts = [str(m) for m in get_messages(answer.wsgi_request)]
    assert texts and all("abc" not in text for text in texts)


def test_the_client_error_for_such_a_key_does_not_quote_it() -> None:
    client = UniPostClient(KEY_WITH_ZERO_WIDTH_SPACE, "http://127.0.0.1:9")
    with pytest.raises(AuthenticationError) as caught:
        client.get_session("cs_1")
    assert "abc" not in str(caught.value)
    assert caught.value.__suppress_context__
