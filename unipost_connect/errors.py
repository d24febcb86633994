"""Errors raised by the UniPost client.

Every failure talking to UniPost is a :class:`UniPostError`, carrying what is known:
the HTTP status (``None`` when no answer came), UniPost's ``code`` and
``normalized_code``, its message and the request id.
"""

from __future__ import annotations


class UniPostError(Exception):
    """Base class: any failure talking to UniPost."""

    default_code = "UNIPOST_ERROR"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        normalized_code: str | None = None,
        request_id: str = "",
        hint: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code or self.default_code
        self.normalized_code = normalized_code or self.code.lower()
        self.request_id = request_id
        self.hint = hint
        self.retry_after = retry_after

    @property
    def is_retriable(self) -> bool:
        return False

    def __str__(self) -> str:
        parts = [self.message]
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        parts.append(self.code)
        if self.request_id:
            parts.append(f"request_id={self.request_id}")
        return " | ".join(parts)


class UniPostConnectionError(UniPostError):
    """No usable answer: DNS, refused, reset, or timed out."""

    default_code = "CONNECTION_ERROR"

    @property
    def is_retriable(self) -> bool:
        return True


class UniPostResponseError(UniPostError):
    """An answer came but it is not what the contract promises (HTML, bad JSON, missing fields)."""

    default_code = "INVALID_RESPONSE"

    @property
    def is_retriable(self) -> bool:
        return self.status is not None and self.status >= 500


class UniPostAPIError(UniPostError):
    """UniPost answered with an error envelope."""

    default_code = "API_ERROR"


class AuthenticationError(UniPostAPIError):
    default_code = "UNAUTHORIZED"


class PlanLimitError(UniPostAPIError):
    """402: the workspace's plan does not allow this platform or feature."""

    default_code = "PLAN_FEATURE_NOT_AVAILABLE"


class NotFoundError(UniPostAPIError):
    default_code = "NOT_FOUND"


class EndpointNotFoundError(UniPostAPIError):
    """404 without UniPost's error envelope: the URL asked is not UniPost's API.

    A wrong ``API_BASE_URL`` (or a proxy in front of it) answers every call this way;
    it says nothing about the session or account asked for, so it is deliberately not
    a :class:`NotFoundError` ("UniPost does not know it"), and retrying cannot help.
    Like every other HTTP error status it is a :class:`UniPostAPIError`.
    """

    default_code = "ENDPOINT_NOT_FOUND"


class UniPostValidationError(UniPostAPIError):
    """422: the request was refused as invalid; retrying it will not help."""

    default_code = "VALIDATION_ERROR"


class RateLimitedError(UniPostAPIError):
    default_code = "RATE_LIMITED"

    @property
    def is_retriable(self) -> bool:
        return True


class ServerError(UniPostAPIError):
    default_code = "INTERNAL_ERROR"

    @property
    def is_retriable(self) -> bool:
        return True


def error_class_for_status(status: int) -> type[UniPostAPIError]:
    if status == 401 or status == 403:
        return AuthenticationError
    if status == 402:
        return PlanLimitError
    if status == 404:
        return NotFoundError
    if status == 422 or status == 400:
        return UniPostValidationError
    if status == 429:
        return RateLimitedError
    if status >= 500:
        return ServerError
    return UniPostAPIError


def error_from_record(code: str, message: str, request_id: str = "") -> UniPostError:
    """An error rebuilt from what a row recorded of one (its code, message and request id),
    of the class that gives that code, so it is told to a user the same way again."""
    classes: tuple[type[UniPostError], ...] = (
        AuthenticationError,
        NotFoundError,
        EndpointNotFoundError,
        UniPostValidationError,
        RateLimitedError,
        ServerError,
        UniPostConnectionError,
        UniPostResponseError,
    )
    by_code = {cls.default_code: cls for cls in classes}
    by_code.update(
        TIMEOUT=UniPostConnectionError,
        INVALID_API_KEY=AuthenticationError,
        INVALID_EXTERNAL_USER_ID=UniPostValidationError,
    )
    cls = by_code.get(code)
    if cls is None:
        cls = (
            PlanLimitError
            if code.startswith("PLAN_")
            else (UniPostResponseError if code.startswith("HTTP_") else UniPostError)
        )
    return cls(message or "The session could not be started.", code=code or None, request_id=request_id)
