"""Network faults as ``requests`` raises them, for the client and fault-matrix tests."""

from __future__ import annotations

import io
from typing import Any

import requests
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError


def refused(url: str = "https://api.unipost.test/v1/connect/sessions") -> requests.ConnectionError:
    """What requests raises when the TCP connection is refused: nothing was sent."""
    reason = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] Connection refused")  # type: ignore[arg-type]
    return requests.ConnectionError(MaxRetryError(None, url, reason))  # type: ignore[arg-type]


def reset_after_headers() -> requests.ConnectionError:
    """A reset once the request was written: the server may have acted on it."""
    reason = ProtocolError("Connection aborted.", ConnectionResetError(104, "Connection reset by peer"))
    return requests.ConnectionError(reason)


class _ResetMidBody(io.RawIOBase):
    """A body whose first chunk arrives, then the peer resets the connection."""

    def __init__(self, first: bytes) -> None:
        self.first: bytes | None = first

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.first is None:
            raise ConnectionResetError(104, "Connection reset by peer")
        n = len(self.first)
        buffer[:n] = self.first
        self.first = None
        return n


def body_reset_after(first: bytes) -> io.BufferedReader:
    """A response body stream: ``first`` arrives, then the connection resets."""
    return io.BufferedReader(_ResetMidBody(first))
