"""The hosted page: the HTML a user sees at a session's ``url``, and what its buttons do.

UniPost's page sends the user on to the platform and back. The fake's page offers the
outcomes instead (approve, deny, an error that goes back to the site, and UniPost's own
error pages that never do), so a test or a demo can walk every branch by hand. Each
button calls the same :class:`~unipost_connect.testing.FakeUniPost` method a test would.
"""

from __future__ import annotations

import dataclasses
import html
import secrets
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from ..platforms import PLATFORM_LABELS
from .records import FakeResponse, FakeSession

if TYPE_CHECKING:
    from .fake import FakeUniPost

#: Failures the hosted page shows on UniPost's own HTML page, never redirecting back:
#: name -> (HTTP status, title, text). The session stays pending.
HOSTED_FAILURES: dict[str, tuple[int, str, str]] = {
    "account_owned": (
        409,
        "Account already connected",
        "This account is already connected to another user of this site.",
    ),
    "plan_limit": (
        402,
        "Plan limit reached",
        "This workspace's plan does not allow another connected account.",
    ),
    "expired": (
        410,
        "Connect session expired",
        "This connect session expired while you were away. Start again from the site.",
    ),
}
# An error's reason when none is chosen: one of those UniPost is seen to send.
DEFAULT_ERROR_REASON = "token_exchange_failed"

_FAILURE_BUTTONS = (
    ("account_owned", "Account owned by another user"),
    ("plan_limit", "Plan limit reached"),
    ("expired", "Session expired meanwhile"),
)


#: The path prefix of the hosted page (and of UniPost's own pages that follow it).
HOSTED_PREFIX = "/connect/"


def with_opener_policy(path: str, response: FakeResponse, policy: str | None) -> FakeResponse:
    """``response`` with ``Cross-Origin-Opener-Policy: policy`` when ``path`` is the hosted
    page's and the answer has none; unchanged when ``policy`` is None or empty.

    UniPost's page (or a provider's it passes through) may send one; the servers add it on
    request, so a test can check that a popup flow survives being cut off from its opener.
    """
    if not policy or not path.startswith(HOSTED_PREFIX):
        return response
    if any(name.lower() == "cross-origin-opener-policy" for name in response.headers):
        return response
    return dataclasses.replace(response, headers={**response.headers, "Cross-Origin-Opener-Policy": policy})


def answer(fake: FakeUniPost, method: str, query: str, body: bytes) -> FakeResponse:
    """Answer a request for the hosted page: the form (GET) or a button pressed (POST)."""
    params = {k: v[0] for k, v in parse_qs(query).items()}
    if method == "POST":
        params.update({k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()})
    session = fake.get_session(params.get("session", ""))
    given = params.get("state", "").encode("utf-8", "surrogateescape")
    # Bytes, because compare_digest refuses str with non-ASCII characters (a TypeError).
    if session is None or not secrets.compare_digest(session.state.encode(), given):
        return page(403, "Link not valid", "This connect link is not valid.")
    if session.status != "pending":
        return page(410, "Link no longer valid", f"This connect session is {session.status}.")
    if method == "GET":
        return _form(session)
    if method != "POST":
        return page(405, "Method not allowed", "Use the buttons on the page.")
    return _press(fake, session, params)


def _press(fake: FakeUniPost, session: FakeSession, params: dict[str, str]) -> FakeResponse:
    """What the button named by ``params["action"]`` does, as the browser sees it."""
    action = params.get("action", "")
    if action in HOSTED_FAILURES:
        return fake.fail_on_hosted_page(session.id, action)
    if action in ("approve", "approve_stay"):
        target = fake.approve(session.id, account_name=params.get("account_name") or None)
        if action == "approve_stay":  # like UniPost's own success page: no redirect back
            return page(
                200, "Connected", "Your account is connected. You can close this page.", _back_link(session)
            )
    elif action == "deny":
        target = fake.deny(session.id)
    elif action == "error":
        target = fake.error(session.id, (params.get("reason") or DEFAULT_ERROR_REASON)[:200])
    else:
        return page(400, "Unknown action", "Choose one of the buttons on the page.")
    if target is None:  # no return_url: UniPost's page is where the flow ends
        return page(
            200,
            "Done",
            f"The connect session is now {session.status}. You can close this page.",
            _back_link(session),
        )
    return FakeResponse(302, b"", {"Location": target})


def page(status: int, title: str, text: str, inner: str = "") -> FakeResponse:
    """One of the fake's HTML pages; ``inner`` is trusted markup, the rest is escaped."""
    document = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)} · Fake UniPost</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem}"
        "button{font-size:1rem;padding:.5rem 1rem;margin:.25rem}</style></head><body>"
        f"<header><p><strong>Fake UniPost</strong> (for tests and demos)</p></header>"
        f"<main><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>{inner}</main></body></html>"
    )
    return FakeResponse(status, document.encode(), {"Content-Type": "text/html; charset=utf-8"})


def _form(session: FakeSession) -> FakeResponse:
    label = PLATFORM_LABELS[session.platform]
    hidden = (
        f"<input type='hidden' name='session' value='{html.escape(session.id)}'>"
        f"<input type='hidden' name='state' value='{html.escape(session.state)}'>"
    )
    reasons = (
        (DEFAULT_ERROR_REASON, "Token exchange failed"),
        ("profile_fetch_failed", "Profile fetch failed"),
        (f"{label} is temporarily unavailable", "The platform's own error text"),
    )
    options = "".join(
        f"<option value='{html.escape(value)}'>{html.escape(text)}</option>" for value, text in reasons
    )
    failure_buttons = "".join(
        f"<button type='submit' name='action' value='{value}'>{html.escape(text)}</button>"
        for value, text in _FAILURE_BUTTONS
    )
    form = (
        f"<form method='post'>{hidden}"
        "<p><label for='account_name'>Account name</label> "
        f"<input id='account_name' name='account_name' value='{html.escape(label)} demo account'></p>"
        "<button type='submit' name='action' value='approve'>Approve</button>"
        "<button type='submit' name='action' value='deny'>Deny</button>"
        "<button type='submit' name='action' value='error'>Error</button>"
        "<p><label for='reason'>Error reason</label> "
        f"<select id='reason' name='reason'>{options}</select></p>"
        "<p><button type='submit' name='action' value='approve_stay'>Approve without returning</button>"
        " (the site learns of it by webhook only)</p>"
        f"<p>Failures shown on this page, with no way back to the site: {failure_buttons}</p></form>"
    )
    site = _site(session)
    asker = f"{site} asks" if site else "A site asks"
    return page(
        200,
        f"Connect your {label} account",
        f"{asker} to connect your {label} account.",
        form + _back_link(session),
    )


def _site(session: FakeSession) -> str:
    """The origin of the site that asked (its return URL's), or "" when it gave none."""
    parts = urlsplit(session.return_url or "")
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") and parts.netloc else ""


def _back_link(session: FakeSession) -> str:
    """A plain link to the asking site's home, so no page of the fake is a dead end."""
    site = _site(session)
    if not site:
        return ""
    return f"<p><a href='{html.escape(site)}/'>Back to {html.escape(site)}</a></p>"
