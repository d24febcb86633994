"""Short, translatable messages that tell a user what happened and what to do next.

Staff see the raw error code and request id in the admin; users see these.
"""

from __future__ import annotations

from django.utils.translation import gettext as _

from .conf import PLATFORM_LABELS
from .errors import (
    AuthenticationError,
    NotFoundError,
    PlanLimitError,
    RateLimitedError,
    UniPostConnectionError,
    UniPostError,
    UniPostResponseError,
    UniPostValidationError,
)
from .models import ConnectSession


def platform_label(platform: str) -> str:
    return PLATFORM_LABELS.get(platform, platform)


def message_for_error(error: UniPostError) -> str:
    """What to tell the user when a call to UniPost failed."""
    if isinstance(error, PlanLimitError):
        return _(
            "Connecting this kind of account is not included in this site's UniPost plan. "
            "Please contact the site's support."
        )
    if isinstance(error, UniPostValidationError):
        if "credentials" in error.message.lower():
            return _(
                "This platform is not set up for connections yet. "
                "Please contact the site's support."
            )
        return _("UniPost could not start the connection. Please contact the site's support.")
    if isinstance(error, RateLimitedError):
        return _("Too many connection attempts right now. Please wait a minute and try again.")
    if isinstance(error, AuthenticationError):
        return _(
            "The connection service is misconfigured on this site. "
            "Please contact the site's support."
        )
    if isinstance(error, NotFoundError):
        return _("UniPost no longer knows this connection attempt. Please start again.")
    if isinstance(error, (UniPostConnectionError, UniPostResponseError)) or (
        error.status is not None and error.status >= 500
    ):
        return _("UniPost is not available right now. Please try again in a few minutes.")
    return _("Something went wrong while talking to UniPost. Please try again.")


REASON_MESSAGES = {
    "access_denied": lambda: _("You declined the authorization, so nothing was connected."),
}


def message_for_outcome(session: ConnectSession) -> tuple[str, str]:
    """(level, text) for the user arriving back from the hosted page."""
    label = platform_label(session.platform)
    if session.status == ConnectSession.Status.COMPLETED:
        return "success", _("Your %(platform)s account is connected.") % {"platform": label}
    if session.status == ConnectSession.Status.CANCELLED:
        return "warning", _(
            "You declined the authorization, so no %(platform)s account was connected."
        ) % {"platform": label}
    if session.status == ConnectSession.Status.EXPIRED:
        return "error", _(
            "The connection attempt expired before it was finished. Please start again."
        )
    if session.status == ConnectSession.Status.FAILED:
        return "error", _("The connection could not be started. Please try again.")
    # Still pending: the hosted page reported an error, or the user came back early.
    if session.return_status == "error":
        return "error", _(
            "%(platform)s reported a problem while connecting, so nothing was connected. "
            "You can try again."
        ) % {"platform": label}
    return "info", _(
        "Your %(platform)s connection is not finished yet. "
        "If you completed it, it will appear here shortly."
    ) % {"platform": label}
