"""What users are told: one clear, translatable message per outcome and error kind."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from django.contrib import messages as django_messages
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from tests.faults import CREATE_FAULTS, RATE_LIMITED, UNAVAILABLE, create_answer, fault_id
from tests.faults import SUPPORT as MISCONFIGURED
from unipost_connect import user_messages, views
from unipost_connect.errors import (
    AuthenticationError,
    NotFoundError,
    PlanLimitError,
    RateLimitedError,
    ServerError,
    UniPostAPIError,
    UniPostConnectionError,
    UniPostError,
    UniPostResponseError,
    UniPostValidationError,
)
from unipost_connect.models import ConnectSession
from unipost_connect.user_messages import (
    message_for_disconnect_error,
    message_for_error,
    message_for_outcome,
)

pytestmark = pytest.mark.django_db

DECLINED = "You declined the authorization, so no LinkedIn account was connected."
PLAN_PLATFORM = (
    "Connecting X (Twitter) accounts is not included in this site's plan. Please contact the site's support."
)
PLAN_LIMIT = (
    "This site has reached a limit of its plan, so no new account can be connected right now. "
    "Please contact the site's support."
)
CREDENTIALS = "LinkedIn is not set up for connections on this site yet. Please contact the site's support."
EXPIRED = (
    "The connection attempt expired before it was finished, so no LinkedIn account was connected. "
    "Please start again."
)


def only_messages(
    client: Client, method: str, url: str, data: dict[str, str] | None = None
) -> list[tuple[int, str]]:
    client.cookies.pop("messages", None)
    answer = getattr(client, method)(url, data or {})
    assert answer.status_code == 302
    return [(m.level, str(m)) for m in get_messages(answer.wsgi_request)]


def start(client: Client, platform: str = "linkedin") -> list[tuple[int, str]]:
    return only_messages(client, "post", reverse("unipost_connect:start"), {"platform": platform})


def come_back(client: Client, url: str) -> list[tuple[int, str]]:
    parts = urlsplit(url)
    return only_messages(client, "get", parts.path + ("?" + parts.query if parts.query else ""))


def latest() -> ConnectSession:
    return ConnectSession.objects.order_by("-created_at").first()


# -- through the views ------------------------------------------------------------------------


def test_access_denied(fake, user_client):
    start(user_client)
    assert come_back(user_client, fake.deny(latest().unipost_session_id)) == [
        (django_messages.WARNING, DECLINED)
    ]


def test_access_denied_reported_as_an_error_while_still_pending(fake, user_client):
    start(user_client)
    back = fake.error(latest().unipost_session_id, reason="access_denied")
    assert come_back(user_client, back) == [(django_messages.WARNING, DECLINED)]
    assert latest().status == ConnectSession.Status.PENDING


def test_a_platform_error_reason(fake, user_client):
    start(user_client)
    back = fake.error(latest().unipost_session_id, reason="The user's token was revoked")
    assert come_back(user_client, back) == [
        (
            django_messages.ERROR,
            "LinkedIn reported a problem while connecting, so nothing was connected. You can try again.",
        )
    ]


def test_plan_does_not_allow_the_platform(fake, user_client):
    fake.plan_platforms.discard("twitter")
    assert start(user_client, "twitter") == [(django_messages.ERROR, PLAN_PLATFORM)]


def test_plan_limit_reached(fake, user_client):
    fake.fail_next("create", 402, code="PLAN_FEATURE_NOT_AVAILABLE", message="managed user limit reached")
    assert start(user_client) == [(django_messages.ERROR, PLAN_LIMIT)]


def test_missing_platform_credentials(fake, user_client):
    fake.platform_credentials.discard("linkedin")
    assert start(user_client) == [(django_messages.ERROR, CREDENTIALS)]


def test_expired(fake, user_client):
    start(user_client)
    fake.advance(minutes=31)
    url = reverse("unipost_connect:return", kwargs={"session_id": latest().pk})
    assert come_back(user_client, url) == [(django_messages.ERROR, EXPIRED)]


def test_rate_limited_on_start_and_on_return(fake, user_client):
    fake.rate_limit_next("create", retry_after=3600)
    assert start(user_client) == [(django_messages.ERROR, RATE_LIMITED)]
    start(user_client)
    fake.rate_limit_next("get", retry_after=3600)
    url = reverse("unipost_connect:return", kwargs={"session_id": latest().pk})
    assert come_back(user_client, url) == [(django_messages.ERROR, RATE_LIMITED)]


# Every fault of the shared table (tests/faults.py) that means "UniPost cannot answer now".
UNAVAILABLE_FAULTS = [f for f in CREATE_FAULTS if f.message == UNAVAILABLE and not f.creates]


@pytest.mark.parametrize("fault", UNAVAILABLE_FAULTS, ids=fault_id)
def test_unipost_unavailable(fake, user_client, user, fault):
    fault.inject(fake, "create", create_answer(user), fault.tries_at("create").calls)
    assert start(user_client) == [(django_messages.ERROR, UNAVAILABLE)]


def test_unauthorized(fake, user_client):
    fake.fail_next("create", 401)
    assert start(user_client) == [(django_messages.ERROR, MISCONFIGURED)]


# -- the mapping itself -----------------------------------------------------------------------

ERRORS: list[tuple[UniPostError, str, str]] = [
    (PlanLimitError("x", status=402, code="PLAN_PLATFORM_NOT_ALLOWED"), "twitter", PLAN_PLATFORM),
    (
        PlanLimitError("x", status=402, code="PLAN_PLATFORM_NOT_ALLOWED"),
        "",
        "Connecting this kind of account is not included in this site's plan. "
        "Please contact the site's support.",
    ),
    (PlanLimitError("x", status=402, code="PLAN_FEATURE_NOT_AVAILABLE"), "linkedin", PLAN_LIMIT),
    (PlanLimitError("x", status=402, code="SOMETHING_NEW"), "linkedin", PLAN_LIMIT),
    (
        UniPostValidationError("workspace is missing linkedin platform credentials; upload …", status=422),
        "linkedin",
        CREDENTIALS,
    ),
    (
        UniPostValidationError("workspace is missing tiktok platform credentials", status=422),
        "",
        "This platform is not set up for connections on this site yet. Please contact the site's support.",
    ),
    (
        UniPostValidationError("return_url must be an http(s) URL", status=422),
        "linkedin",
        "The connection could not be started. Please contact the site's support.",
    ),
    (RateLimitedError("slow down", status=429, retry_after=30), "linkedin", RATE_LIMITED),
    (AuthenticationError("bad key", status=401), "linkedin", MISCONFIGURED),
    (
        NotFoundError("gone", status=404),
        "linkedin",
        "This connection attempt is no longer known. Please start again.",
    ),
    (ServerError("boom", status=500), "linkedin", UNAVAILABLE),
    (UniPostAPIError("odd", status=503), "linkedin", UNAVAILABLE),
    (UniPostConnectionError("reset"), "linkedin", UNAVAILABLE),
    (UniPostConnectionError("slow", code="TIMEOUT"), "linkedin", UNAVAILABLE),
    (UniPostResponseError("not json", status=200), "linkedin", UNAVAILABLE),
    (
        UniPostAPIError("teapot", status=418),
        "linkedin",
        "Something went wrong while connecting your account. Please try again.",
    ),
]


@pytest.mark.parametrize(("error", "platform", "text"), ERRORS)
def test_message_for_error(error, platform, text):
    assert message_for_error(error, platform=platform) == text


@pytest.mark.parametrize(("error", "_platform", "_text"), ERRORS)
def test_messages_never_repeat_unipost_s_own_text(error, _platform, _text):
    text = message_for_error(error, platform="linkedin")
    assert error.message not in text
    assert error.code not in text


@pytest.mark.parametrize(
    ("error", "text"),
    [
        (
            ServerError("boom", status=500),
            "Your LinkedIn account could not be disconnected right now. Please try again in a few minutes.",
        ),
        (
            UniPostConnectionError("reset"),
            "Your LinkedIn account could not be disconnected right now. Please try again in a few minutes.",
        ),
        (RateLimitedError("slow", status=429), RATE_LIMITED),
        (AuthenticationError("bad key", status=401), MISCONFIGURED),
    ],
)
def test_message_for_disconnect_error(error, text):
    assert message_for_disconnect_error(error, platform="linkedin") == text


def session_in(status: str, return_status: str = "", return_reason: str = "") -> ConnectSession:
    return ConnectSession(
        platform="linkedin", status=status, return_status=return_status, return_reason=return_reason
    )


@pytest.mark.parametrize(
    ("session", "level", "text"),
    [
        (session_in("completed"), django_messages.SUCCESS, "Your LinkedIn account is connected."),
        # A completed session wins over whatever the browser claimed.
        (
            session_in("completed", "cancelled", "access_denied"),
            django_messages.SUCCESS,
            "Your LinkedIn account is connected.",
        ),
        (session_in("cancelled", "cancelled", "access_denied"), django_messages.WARNING, DECLINED),
        (session_in("expired"), django_messages.ERROR, EXPIRED),
        (
            session_in("failed"),
            django_messages.ERROR,
            "The connection could not be started. Please try again.",
        ),
        (session_in("pending", "error", "access_denied"), django_messages.WARNING, DECLINED),
        (
            session_in("pending", "error", "server_error"),
            django_messages.ERROR,
            "LinkedIn reported a problem while connecting, so nothing was connected. You can try again.",
        ),
        # A claimed success on a pending session is not believed.
        (
            session_in("pending", "success"),
            django_messages.INFO,
            "Your LinkedIn connection is not finished yet. If you completed it, it will appear here shortly.",
        ),
        (
            session_in("pending"),
            django_messages.INFO,
            "Your LinkedIn connection is not finished yet. If you completed it, it will appear here shortly.",
        ),
    ],
)
def test_message_for_outcome(session, level, text):
    assert message_for_outcome(session) == (level, text)


# -- translation -----------------------------------------------------------------------------


def marked(text: str) -> str:
    return "⟪" + text + "⟫"


def test_every_user_message_goes_through_gettext(monkeypatch, fake, user_client, user):
    monkeypatch.setattr(user_messages, "_", marked)
    monkeypatch.setattr(views, "_", marked)
    texts = [message_for_error(e, platform=p) for e, p, _ in ERRORS]
    texts += [message_for_disconnect_error(e, platform="linkedin") for e, _p, _t in ERRORS]
    for status, hint, reason in [
        ("completed", "", ""),
        ("cancelled", "", ""),
        ("expired", "", ""),
        ("failed", "", ""),
        ("pending", "error", "access_denied"),
        ("pending", "error", "x"),
        ("pending", "", ""),
    ]:
        texts.append(message_for_outcome(session_in(status, hint, reason))[1])
    # The views' own strings.
    texts += [t for _, t in start(user_client, "myspace")]
    from unipost_connect.models import ConnectedAccount

    account = ConnectedAccount.objects.create(user=user, platform="linkedin", managed_account_id="sa_1")
    texts += [
        t
        for _, t in only_messages(
            user_client, "post", reverse("unipost_connect:disconnect", args=[account.pk])
        )
    ]
    assert texts
    for text in texts:
        assert text.startswith("⟪") and text.endswith("⟫"), text


def test_the_page_language_follows_the_active_language(user_client, settings):
    from django.utils import translation

    settings.LANGUAGE_CODE = "de"
    with translation.override("de"):
        html = user_client.get(reverse("unipost_connect:connections")).content.decode()
    assert '<html lang="de">' in html
