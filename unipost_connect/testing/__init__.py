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

Where things live: ``fake`` (the state machine and fault injection), ``records`` (a
session, an account, an HTTP answer), ``api`` (the REST routes and envelopes), ``hosted``
(the hosted page), ``delivery`` (webhooks built, signed and delivered: one policy for
both servers), ``server`` (a standalone HTTP server, with ``control``'s test-only routes)
and ``live`` (the fake served from Django URLs, for the example project).
"""

from ..contract import REFRESH_FAILURE_REASONS
from .delivery import WebhookDelivery, build_webhook
from .fake import FakeUniPost
from .hosted import HOSTED_FAILURES
from .records import FakeAccount, FakeResponse, FakeSession

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
