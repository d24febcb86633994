"""Test helpers: a fake UniPost with the contract's semantics.

Typical use in a site's tests::

    from unipost_connect.testing import FakeUniPost

    fake = FakeUniPost(api_key="up_test_x", base_url="https://api.unipost.test")
    with fake.mock():
        ...  # requests to the fake's base URL are answered by the fake

``responses`` must be installed (it is in the ``test`` extra).
"""

from .fake import FakeAccount, FakeResponse, FakeSession, FakeUniPost, WebhookDelivery, build_webhook

__all__ = [
    "FakeAccount",
    "FakeResponse",
    "FakeSession",
    "FakeUniPost",
    "WebhookDelivery",
    "build_webhook",
]
