"""The OpenAPI document of the JSON API: a valid OpenAPI 3.1 document (openapi-spec-validator),
naming exactly the endpoints there are, and strict enough that an answer with a field it
does not describe fails (openapi-core). The views' real answers are checked against it in
every API test (``tests/api_client.py``); here, that the check catches what it must."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
from django.conf import settings
from django.http import JsonResponse
from django.test import Client, override_settings
from django.urls import include, path
from openapi_core.exceptions import OpenAPIError
from openapi_core.validation.response.exceptions import InvalidData
from openapi_spec_validator import validate

from tests.api_client import ACCOUNT, ENDPOINTS, SESSION, Api, check_answer, check_request, spec, url
from unipost_connect import openapi
from unipost_connect.models import ConnectedAccount, ConnectSession
from unipost_connect.testing import FakeUniPost

pytestmark = pytest.mark.django_db

# A site that includes the app elsewhere (see test_the_paths_follow_the_include).
urlpatterns = [path("elsewhere/connect/", include("unipost_connect.urls"))]


@pytest.fixture
def api(user_client: Client) -> Api:
    return Api(user_client)


@pytest.fixture
def account(user: Any) -> ConnectedAccount:
    return ConnectedAccount.objects.create(user=user, platform="linkedin", managed_account_id="sa_1")


def test_the_document_is_valid_openapi_3_1() -> None:
    document = openapi.document()
    assert document["openapi"] == "3.1.0"
    validate(document)


def test_the_served_document_is_valid_too(api: Api) -> None:
    validate(api.schema().json())


def test_it_names_exactly_the_endpoints_and_their_methods() -> None:
    document = openapi.document()
    kwargs = {SESSION: {"session_id": "{session_id}"}, ACCOUNT: {"account_id": "{account_id}"}}
    wanted = {
        url(name, **{k: (openapi._SOME_UUID if k == "session_id" else 1) for k in kwargs.get(name, {})})
        .replace(str(openapi._SOME_UUID), "{session_id}")
        .replace("/1/", "/{account_id}/"): method.lower()
        for name, method in ENDPOINTS.items()
    }
    assert {p: list(ops) for p, ops in document["paths"].items()} == {p: [m] for p, m in wanted.items()}


@override_settings(ROOT_URLCONF=__name__)
def test_the_paths_follow_the_include() -> None:
    assert sorted(openapi.document()["paths"]) == [
        "/elsewhere/connect/api/accounts/",
        "/elsewhere/connect/api/accounts/{account_id}/",
        "/elsewhere/connect/api/schema/",
        "/elsewhere/connect/api/sessions/",
        "/elsewhere/connect/api/sessions/{session_id}/",
    ]


def test_the_offered_platforms_follow_the_settings() -> None:
    with override_settings(UNIPOST_CONNECT={**settings.UNIPOST_CONNECT, "PLATFORMS": ["bluesky"]}):
        described = openapi.document()["components"]["schemas"]["SessionStart"]["properties"]["platform"]
    assert "bluesky" in described["description"]
    assert "linkedin" not in described["description"]


@override_settings(CSRF_HEADER_NAME="HTTP_X_MY_CSRF", SESSION_COOKIE_NAME="site_session")
def test_the_security_schemes_follow_the_settings() -> None:
    schemes = openapi.document()["components"]["securitySchemes"]
    assert (schemes["csrf"]["in"], schemes["csrf"]["name"]) == ("header", "X-My-Csrf")
    assert (schemes["session"]["in"], schemes["session"]["name"]) == ("cookie", "site_session")


def test_the_default_csrf_header_is_x_csrftoken() -> None:
    assert openapi.document()["components"]["securitySchemes"]["csrf"]["name"] == "X-CSRFToken"


def test_writes_need_the_csrf_header_and_reads_do_not() -> None:
    document = openapi.document()
    for operations in document["paths"].values():
        for method, operation in operations.items():
            if method == "get":
                assert "security" not in operation  # the document's default: the session alone
            else:
                assert operation["security"] == [{"session": [], "csrf": []}]
    assert document["security"] == [{"session": []}]


# -- strictness --------------------------------------------------------------------------------------


def _resolve(document: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def _object_schemas(document: dict[str, Any], schema: Any, seen: set[int]) -> Iterator[dict[str, Any]]:
    schema = _resolve(document, schema)
    if not isinstance(schema, dict) or id(schema) in seen:
        return
    seen.add(id(schema))
    if schema.get("type") == "object" or "properties" in schema:
        yield schema
    for key in ("properties",):
        for child in schema.get(key, {}).values():
            yield from _object_schemas(document, child, seen)
    for key in ("items",):
        if key in schema:
            yield from _object_schemas(document, schema[key], seen)
    for key in ("oneOf", "anyOf", "allOf"):
        for child in schema.get(key, []):
            yield from _object_schemas(document, child, seen)


def answer_schemas(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every object schema of every answer of every operation, with where it is."""
    for route, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, answer in operation["responses"].items():
                for media in _resolve(document, answer).get("content", {}).values():
                    for schema in _object_schemas(document, media["schema"], set()):
                        yield f"{method.upper()} {route} {status}", schema


def test_every_object_in_every_answer_admits_no_undescribed_field() -> None:
    document = openapi.document()
    found = list(answer_schemas(document))
    schema_answer = openapi.document()["paths"][url("api-schema")]["get"]["responses"]["200"]
    the_document_itself = schema_answer["content"]["application/json"]["schema"]
    checked = [(where, s) for where, s in found if s != the_document_itself]
    assert len(checked) > 40
    for where, schema in checked:
        assert schema.get("additionalProperties") is False, (where, schema)
        assert set(schema["required"]) == set(schema["properties"]), where


def test_every_error_answer_lists_its_codes() -> None:
    document = openapi.document()
    for name, answer in document["components"]["responses"].items():
        code = answer["content"]["application/json"]["schema"]["properties"]["error"]["properties"]["code"]
        assert "enum" in code or "pattern" in code, name


def test_every_code_the_views_answer_is_documented_under_its_status() -> None:
    import re
    from pathlib import Path

    import unipost_connect.api

    source = Path(unipost_connect.api.__file__).read_text()
    answered = set(re.findall(r"ApiError\(\s*(\d{3}),\s*\"([a-z_]+)\"", source))
    answered |= {(400, code) for code in re.findall(r"_invalid\((?:code: str = )?\"([a-z_]+)\"", source)}
    answered = {(int(status), code) for status, code in answered}
    documented = {(status, code) for status, codes in openapi.ERROR_CODES.items() for code in codes}
    assert answered == documented
    # And the passed-on codes' fallbacks fit the pattern the document gives them.
    for fallback in ("plan_limit", "validation_error"):
        assert re.fullmatch(openapi.PASSED_ON_CODE["pattern"], fallback)


def answers(api: Api, fake: FakeUniPost, account: ConnectedAccount) -> dict[str, Any]:
    """A real answer of each endpoint, and a real error."""
    started = api.start()
    session_id = started.json()["id"]
    fake.approve(ConnectSession.objects.get(pk=session_id).unipost_session_id or "")
    return {
        "start": started,
        "session": api.session(session_id),
        "accounts": api.accounts(),
        "error": api.session("00000000-0000-4000-8000-000000000000"),
    }


def spoiled(response: Any, change: Any) -> JsonResponse:
    """``response`` with its JSON body changed by ``change``, as if the view had answered it."""
    body = json.loads(response.content)
    change(body)
    copy = JsonResponse(body, status=response.status_code)
    for name, value in response.items():
        if name.lower() != "content-length":
            copy[name] = value
    copy.wsgi_request = response.wsgi_request  # type: ignore[attr-defined]
    return copy


# What to spoil in which answer, and what the check must say about it.
SPOILS = {
    "start: a field more": ("start", lambda b: b.update(state="s3cret"), "'state' was unexpected"),
    "session: a field more": ("session", lambda b: b.update(user_id=1), "'user_id' was unexpected"),
    "session: a field more in its account": (
        "session",
        lambda b: b["account"].update(external_user_id="1"),
        "is not valid under any of the given schemas",  # neither an Account nor null
    ),
    "accounts: a field more in an account": (
        "accounts",
        lambda b: b["accounts"][0].update(profile_id="p"),
        "'profile_id' was unexpected",
    ),
    "accounts: a field more": ("accounts", lambda b: b.update(total=1), "'total' was unexpected"),
    "error: a field more in the error": (
        "error",
        lambda b: b["error"].update(request_id="r"),
        "'request_id' was unexpected",
    ),
    "error: a field more": ("error", lambda b: b.update(detail="d"), "'detail' was unexpected"),
    "session: a field missing": ("session", lambda b: b.pop("error"), "'error' is a required property"),
    "session: an unknown status": ("session", lambda b: b.update(status="done"), "'done' is not one of"),
    "error: an undescribed code": ("error", lambda b: b["error"].update(code="gone"), "'gone' is not one of"),
    "accounts: an id of the wrong type": (
        "accounts",
        lambda b: b["accounts"][0].update(id="1"),
        "'1' is not of type 'integer'",
    ),
}


@pytest.mark.parametrize("spoil", list(SPOILS))
def test_an_answer_the_document_does_not_describe_is_caught(
    spoil: str, api: Api, fake: FakeUniPost, account: ConnectedAccount
) -> None:
    real = answers(api, fake, account)  # each checked against the document as it was made
    which, change, said = SPOILS[spoil]
    with pytest.raises(InvalidData) as caught:
        check_answer(spoiled(real[which], change))
    errors = getattr(caught.value.__cause__, "schema_errors", ())
    assert any(said in str(error) for error in errors), errors


def test_the_real_answers_pass_the_same_check(api: Api, fake: FakeUniPost, account: ConnectedAccount) -> None:
    for response in answers(api, fake, account).values():
        check_answer(spoiled(response, lambda body: None))


def test_a_405_with_a_field_more_is_caught(api: Api) -> None:
    real = api.call("PUT", "api-accounts")
    with pytest.raises(jsonschema.ValidationError, match="Additional properties"):
        check_answer(spoiled(real, lambda b: b["error"].update(allowed="GET")))


# -- requests ------------------------------------------------------------------------------------------


def test_the_requests_the_api_takes_are_the_ones_it_describes(
    csrf_client: Client, fake: FakeUniPost, account: ConnectedAccount
) -> None:
    csrf_client.get(url("api-accounts"))
    api = Api(csrf_client, csrf_client.cookies["csrftoken"].value)
    started = api.start({"platform": "linkedin", "next": "/x/", "popup": True})
    check_request(started)
    check_request(
        api.start({"platform": "bluesky", "popup": "1"}, content_type="application/x-www-form-urlencoded")
    )
    check_request(api.session(started.json()["id"]))
    check_request(api.accounts())
    check_request(api.disconnect(account.pk))
    check_request(api.schema())


def test_a_write_without_the_csrf_header_is_outside_the_document(api: Api, fake: FakeUniPost) -> None:
    with pytest.raises(OpenAPIError):
        check_request(api.start())


def test_an_anonymous_read_is_outside_the_document(fake: FakeUniPost) -> None:
    with pytest.raises(OpenAPIError):
        check_request(Api(Client()).accounts())


def test_spec_is_built_once_per_document() -> None:
    assert spec() is spec()
