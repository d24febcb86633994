"""What the fake keeps and answers with: a connect session, a managed account (each in
the JSON the API writes for it), an injected fault and an HTTP answer. The bottom of the fake: every other
module under ``unipost_connect.testing`` builds on these."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode, urlsplit


def new_id() -> str:
    """A new id, as the live server makes them: a UUID."""
    return str(uuid.uuid4())


def iso(value: datetime | None) -> str | None:
    """A time as UniPost writes it: RFC 3339 in UTC, whole seconds, ``Z``."""
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


@dataclass
class FakeSession:
    id: str
    platform: str
    external_user_id: str
    state: str
    url: str
    created_at: datetime
    expires_at: datetime
    external_user_email: str | None = None
    return_url: str | None = None
    profile_id: str | None = None
    allow_quickstart_creds: bool = False
    status: str = "pending"
    completed_at: datetime | None = None
    managed_account_id: str | None = None

    def return_to(self, **params: str) -> str | None:
        """Where the hosted page sends the browser back: ``return_url`` with ``params``."""
        if not self.return_url:
            return None
        # Append to the query (with "&" when there is one already), before any fragment.
        base, hash_, fragment = self.return_url.partition("#")
        joiner = "&" if urlsplit(base).query else ("" if base.endswith("?") else "?")
        return base + joiner + urlencode(params) + hash_ + fragment

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "platform": self.platform,
            "external_user_id": self.external_user_id,
            "allow_quickstart_creds": self.allow_quickstart_creds,
            "status": self.status,
            "url": self.url,
            "expires_at": iso(self.expires_at),
            "created_at": iso(self.created_at),
        }
        if self.external_user_email:
            data["external_user_email"] = self.external_user_email
        if self.return_url:
            data["return_url"] = self.return_url
        if self.status in ("completed", "cancelled"):
            data["completed_at"] = iso(self.completed_at)
        if self.status == "completed":
            data["completed_social_account_id"] = self.managed_account_id
            data["managed_account_id"] = self.managed_account_id
        return data


@dataclass
class FakeAccount:
    """A managed account. ``status``: ``active``, ``reconnect_required`` (listed) or
    ``disconnected`` (no longer listed)."""

    id: str
    platform: str
    external_user_id: str
    account_name: str | None
    profile_id: str
    connected_at: datetime
    status: str = "active"
    connection_type: str = "managed"
    disconnected_at: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "platform": self.platform,
            "account_name": self.account_name,
            "status": self.status,
            "connection_type": self.connection_type,
            "external_user_id": self.external_user_id,
            "profile_id": self.profile_id,
            "connected_at": iso(self.connected_at),
        }


@dataclass
class InjectedFault:
    """A failure :meth:`FakeUniPost.fail_next` queued for the next ``remaining`` calls."""

    endpoint: str | None  # None: any endpoint
    status: int
    body: bytes | None  # None: an error envelope built when answering (it has the request id)
    headers: dict[str, str]
    exception: BaseException | None
    remaining: int
    code: str = ""
    message: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FakeResponse:
    """One HTTP answer of the fake: the API's, the hosted page's or a test-control route's."""

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
