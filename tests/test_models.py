"""The models' own helpers."""

from __future__ import annotations

from typing import Any

import pytest

from unipost_connect.models import ConnectedAccount


@pytest.mark.django_db
def test_account_is_active_only_while_active(user: Any) -> None:
    account = ConnectedAccount.objects.create(
        user=user, managed_account_id="sa_1", platform="linkedin", external_user_id=str(user.pk)
    )
    assert account.status == ConnectedAccount.Status.ACTIVE
    assert account.is_active
    account.status = ConnectedAccount.Status.DISCONNECTED
    assert not account.is_active
