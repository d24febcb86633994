"""Test helpers: a fake UniPost with the contract's semantics.

Typical use in a site's tests::

    from unipost_connect.testing import FakeUniPost

    fake = FakeUniPost(api_key="up_test_x", base_url="https://api.unipost.test")
    with fake.mock():
        ...  # requests to the fake's base URL are answered by the fake

Beyond approve / deny / error, a test can make the hosted page fail without a way back
(``fake.fail_on_hosted_page(session_id, "account_owned" | "plan_limit" | "expired")``),
disconnect an account (``fake.disconnect(account_id)``) or have its token refresh fail
(``fake.fail_token_refresh(account_id, reason="refresh_failed")``).

``responses`` must be installed (it is in the ``test`` extra).
"""

from ..contract import REFRESH_FAILURE_REASONS
from .fake import (
    HOSTED_FAILURES,
    FakeAccount,
    FakeResponse,
    FakeSession,
    FakeUniPost,
    WebhookDelivery,
    build_webhook,
)

__all__ = [
    "HOSTED_FAILURES",
    "REFRESH_FAILURE_REASONS",
    "FakeAccount",
    "FakeResponse",
    "FakeSession",
    "FakeUniPost",
    "WebhookDelivery",
    "build_webhook",
]
