"""Short, translatable messages that tell a user what happened and what to do next.

Staff see the raw error code and request id in the admin; users see these. Nothing here
repeats UniPost's own message text: it may name workspace settings the user cannot
change, and it is not translated.
"""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.utils.translation import gettext as _

from .accounts import ACCOUNT_CONFLICT
from .errors import (
    AuthenticationError,
    EndpointNotFoundError,
    NotFoundError,
    PlanLimitError,
    RateLimitedError,
    ServerError,
    UniPostConnectionError,
    UniPostError,
    UniPostResponseError,
    UniPostValidationError,
)
from .models import ConnectSession
from .platforms import label as platform_label


def _is_missing_credentials(error: UniPostError) -> bool:
    # UniPost says "workspace is missing <platform> platform credentials; …" (a 422).
    text = error.message.lower()
    return "credential" in text and "missing" in text


def message_for_error(error: UniPostError, *, platform: str = "") -> str:
    """What to tell the user when a call to UniPost failed."""
    label = platform_label(platform.strip().lower()) if platform else ""
    if isinstance(error, PlanLimitError):
        if error.code == "PLAN_PLATFORM_NOT_ALLOWED" and label:
            return _(
                "Connecting %(platform)s accounts is not included in this site's plan. "
                "Please contact the site's support."
            ) % {"platform": label}
        if error.code == "PLAN_PLATFORM_NOT_ALLOWED":
            return _(
                "Connecting this kind of account is not included in this site's plan. "
                "Please contact the site's support."
            )
        return _(
            "This site has reached a limit of its plan, so no new account can be "
            "connected right now. Please contact the site's support."
        )
    if isinstance(error, UniPostValidationError):
        if _is_missing_credentials(error):
            if label:
                return _(
                    "%(platform)s is not set up for connections on this site yet. "
                    "Please contact the site's support."
                ) % {"platform": label}
            return _(
                "This platform is not set up for connections on this site yet. "
                "Please contact the site's support."
            )
        return _("The connection could not be started. Please contact the site's support.")
    if isinstance(error, RateLimitedError):
        return _("Too many connection attempts right now. Please wait a minute and try again.")
    if isinstance(error, (AuthenticationError, EndpointNotFoundError)):  # a bad key or API_BASE_URL
        return _("The connection service is misconfigured on this site. Please contact the site's support.")
    if isinstance(error, NotFoundError):
        return _("This connection attempt is no longer known. Please start again.")
    # A ServerError rebuilt from a row's record (error_from_record) has lost its status.
    if isinstance(error, (UniPostConnectionError, UniPostResponseError, ServerError)) or (
        error.status is not None and error.status >= 500
    ):
        return _("The connection service is not available right now. Please try again in a few minutes.")
    return _("Something went wrong while connecting your account. Please try again.")


def message_for_unknown_platform() -> str:
    """What to tell the user asking to connect a platform this site does not offer."""
    return _("That platform cannot be connected here.")


def message_for_start_in_progress(platform: str) -> str:
    """What to tell the user whose start is still being made by another request."""
    return _(
        "Your %(platform)s connection is already being started in another tab or window. "
        "Please wait a moment and try again."
    ) % {"platform": platform_label(platform)}


def message_for_disconnect_error(error: UniPostError, *, platform: str = "") -> str:
    """What to tell the user when UniPost could not disconnect an account."""
    if isinstance(error, (RateLimitedError, AuthenticationError, EndpointNotFoundError)):
        return message_for_error(error, platform=platform)
    return _(
        "Your %(platform)s account could not be disconnected right now. Please try again in a few minutes."
    ) % {"platform": platform_label(platform)}


def message_for_not_allowed_to_manage(platform: str) -> str:
    """What to tell a user who may see an account but not disconnect or reconnect it."""
    return _("You cannot change this %(platform)s account. Ask whoever manages your team's accounts.") % {
        "platform": platform_label(platform)
    }


# Messages for the ``reason`` UniPost appends to the return URL, when one is worth
# naming. Values are callables so the text is translated in the user's language.
REASON_MESSAGES: dict[str, Callable[[str], str]] = {
    "access_denied": lambda label: (
        _("You declined the authorization, so no %(platform)s account was connected.") % {"platform": label}
    ),
}


def message_for_outcome(session: ConnectSession) -> tuple[int, str]:
    """(message level, text) for the user arriving back from the hosted page.

    ``session`` has just been reconciled with UniPost: its status is the truth, and its
    ``return_status``/``return_reason`` (what the browser claimed) only pick the wording
    of a session that is still pending.
    """
    label = platform_label(session.platform)
    if session.status == ConnectSession.Status.COMPLETED and session.error_code == ACCOUNT_CONFLICT:
        return messages.WARNING, _(
            "This %(platform)s account is already connected to another user of this site, so it "
            "was not added to yours. Please contact the site's support."
        ) % {"platform": label}
    if session.status == ConnectSession.Status.COMPLETED:
        return messages.SUCCESS, _("Your %(platform)s account is connected.") % {"platform": label}
    if session.status == ConnectSession.Status.CANCELLED:
        return messages.WARNING, REASON_MESSAGES["access_denied"](label)
    if session.status == ConnectSession.Status.EXPIRED:
        return messages.ERROR, _(
            "The connection attempt expired before it was finished, so no %(platform)s "
            "account was connected. Please start again."
        ) % {"platform": label}
    if session.status == ConnectSession.Status.FAILED:
        return messages.ERROR, _("The connection could not be started. Please try again.")
    # Still pending at UniPost: the hosted page reported an error, or the user came back
    # early (or typed the return URL). A claimed success proves nothing.
    if session.return_status in ("error", "cancelled"):
        reason = REASON_MESSAGES.get(session.return_reason)
        if reason is not None:
            return messages.WARNING, reason(label)
        return messages.ERROR, _(
            "%(platform)s reported a problem while connecting, so nothing was connected. You can try again."
        ) % {"platform": label}
    return messages.INFO, _(
        "Your %(platform)s connection is not finished yet. If you completed it, it will appear here shortly."
    ) % {"platform": label}


def attempt_outcome(session: ConnectSession) -> str:
    """A past connection attempt, in the words its user would use (the attempts list)."""
    if session.status == ConnectSession.Status.COMPLETED:
        if session.error_code == ACCOUNT_CONFLICT:
            return _("Not added: that account belongs to someone else")
        return _("Connected")
    if session.status == ConnectSession.Status.CANCELLED:
        return _("Not connected: you declined")
    if session.status == ConnectSession.Status.EXPIRED:
        return _("Not connected: it timed out. Try again")
    if session.status == ConnectSession.Status.FAILED:
        return _("Not connected: it could not start. Try again")
    if session.return_status in ("error", "cancelled"):
        return _("Not connected: try again")
    return _("Not finished yet")
