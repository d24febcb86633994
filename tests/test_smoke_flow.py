from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from unipost_connect.models import ConnectedAccount, ConnectSession

pytestmark = pytest.mark.django_db


def test_connect_approve_return(fake, user_client, user):
    answer = user_client.post(reverse("unipost_connect:start"), {"platform": "linkedin"})
    assert answer.status_code == 302
    session = ConnectSession.objects.get(user=user)
    assert answer["Location"] == session.url
    assert session.url.startswith("https://app.unipost.test/connect/linkedin?")
    back = fake.approve(session.unipost_session_id)
    parts = urlsplit(back)
    answer = user_client.get(parts.path + "?" + parts.query)
    assert answer.status_code == 302
    assert answer["Location"] == "/done/"
    session.refresh_from_db()
    assert session.status == "completed"
    account = ConnectedAccount.objects.get(user=user)
    assert account.managed_account_id == session.managed_account_id
    texts = [str(m) for m in get_messages(answer.wsgi_request)]
    assert texts == ["Your LinkedIn account is connected."]
