"""Calling the JSON API from tests, with every answer checked against its OpenAPI document.

:class:`Api` wraps a Django test client: each call names an endpoint by its URL name, and
each answer is validated by openapi-core against ``unipost_connect.openapi.document()``
(whose objects admit no field they do not describe) before the test sees it, whatever its
status. A 405 has no operation to be checked against: its body is checked against the
document's ``Error`` schema, and its ``Allow`` header against the endpoint's methods.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import jsonschema
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest
from django.test import Client
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart
from django.urls import reverse
from openapi_core import OpenAPI
from openapi_core.contrib.django import DjangoOpenAPIRequest, DjangoOpenAPIResponse

from unipost_connect import openapi

SESSIONS = "api-sessions"
SESSION = "api-session"
ACCOUNTS = "api-accounts"
ACCOUNT = "api-account"
SCHEMA = "api-schema"

# Each endpoint, its one method, and kwargs that name something.
ENDPOINTS: dict[str, str] = {
    SESSIONS: "POST",
    SESSION: "GET",
    ACCOUNTS: "GET",
    ACCOUNT: "DELETE",
    SCHEMA: "GET",
}
WRITES = [name for name, method in ENDPOINTS.items() if method not in ("GET", "HEAD")]


def url(name: str, **kwargs: Any) -> str:
    return reverse(f"unipost_connect:{name}", kwargs=kwargs or None)


class _Request(DjangoOpenAPIRequest):
    """Django's request for openapi-core, with path parameters as the strings they were
    (the URL converters made a UUID or an int of them)."""

    def __init__(self, request: HttpRequest) -> None:
        super().__init__(request)
        self.parameters.path = {key: str(value) for key, value in self.parameters.path.items()}


_SPECS: dict[str, OpenAPI] = {}


def spec(document: dict[str, Any] | None = None) -> OpenAPI:
    """openapi-core's reading of ``document`` (the current one by default), built once per text."""
    document = openapi.document() if document is None else document
    key = json.dumps(document, sort_keys=True)
    if key not in _SPECS:
        _SPECS[key] = OpenAPI.from_dict(document)
    return _SPECS[key]


def check_answer(response: Any) -> None:
    """Raise if ``response`` is not what the OpenAPI document describes for its request."""
    document = openapi.document()
    if response.status_code == 405:
        error_schema = {**document["components"]["schemas"]["Error"], "components": document["components"]}
        jsonschema.Draft202012Validator(error_schema).validate(json.loads(response.content))
        return
    spec(document).validate_response(_Request(response.wsgi_request), DjangoOpenAPIResponse(response))


def check_request(response: Any) -> None:
    """Raise if the request that got ``response`` is not one the document describes."""
    spec().validate_request(_Request(response.wsgi_request))


class Api:
    """A test client for the JSON API; ``csrf_token`` is sent in ``X-CSRFToken`` on writes."""

    def __init__(self, client: Client, csrf_token: str | None = None) -> None:
        self.client = client
        self.csrf_token = csrf_token

    def call(
        self,
        method: str,
        name: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        raw: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        secure: bool = False,
        environ: dict[str, str] | None = None,
        check: bool = True,
        **kwargs: Any,
    ) -> Any:
        """``method`` on the endpoint ``name`` (``kwargs`` name the object), ``body`` sent as
        ``content_type``, or ``raw`` as it is; the answer is checked unless ``check=False``."""
        sent_headers = dict(headers or {})
        if self.csrf_token is not None and method not in ("GET", "HEAD"):
            sent_headers.setdefault("X-CSRFToken", self.csrf_token)
        if raw is not None:
            payload: bytes | str = raw
        elif body is None:
            payload = ""
        elif content_type == "application/json":
            payload = json.dumps(body)
        elif content_type == "application/x-www-form-urlencoded":
            payload = urlencode(body)
        else:
            assert content_type == MULTIPART_CONTENT
            payload = encode_multipart(BOUNDARY, body)
        environ = {**({"CONTENT_TYPE": content_type} if content_type else {}), **(environ or {})}
        response = self.client.generic(
            method,
            url(name, **kwargs),
            payload,
            content_type,
            secure=secure,
            headers=sent_headers,
            **environ,
        )
        assert response.status_code != 500
        assert "no-store" in response["Cache-Control"]
        if check:
            check_answer(response)
        return response

    def start(self, body: Any = None, **options: Any) -> Any:
        return self.call("POST", SESSIONS, {"platform": "linkedin"} if body is None else body, **options)

    def session(self, session_id: Any, **options: Any) -> Any:
        return self.call("GET", SESSION, session_id=session_id, **options)

    def accounts(self, **options: Any) -> Any:
        return self.call("GET", ACCOUNTS, **options)

    def disconnect(self, account_id: int, **options: Any) -> Any:
        return self.call("DELETE", ACCOUNT, account_id=account_id, **options)

    def schema(self, **options: Any) -> Any:
        return self.call("GET", SCHEMA, **options)


def iso(value: Any) -> Any:
    """A datetime as the API writes it (Django's JSON encoder)."""
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def error_of(response: Any) -> tuple[int, str, str]:
    """(status, code, message) of an error answer, checking it has nothing else."""
    body = json.loads(response.content)
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    return response.status_code, body["error"]["code"], body["error"]["message"]
