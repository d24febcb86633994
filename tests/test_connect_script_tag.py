"""``{% unipost_connect_script %}`` and ``{% unipost_connect_button ... popup=True %}``:
what the page gets for connect.js, and a popup button that still works without it."""

from __future__ import annotations

import html
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser
from django.template import engines
from django.test import Client, RequestFactory, override_settings
from django.urls import reverse

from unipost_connect.models import ConnectSession
from unipost_connect.testing import FakeUniPost

pytestmark = pytest.mark.django_db

STATIC = Path(__file__).resolve().parents[1] / "unipost_connect" / "static" / "unipost_connect"


def render(source: str, request: Any = None, **context: Any) -> str:
    template = engines["django"].from_string("{% load unipost_connect %}" + source)
    return template.render(context, request)


def request_for(user: Any) -> Any:
    request = RequestFactory().get("/page/?tab=1")
    request.user = user
    return request


def script_attributes(rendered: str) -> dict[str, str]:
    [tag] = re.findall(r"<script\b[^>]*>", rendered)
    return {name: html.unescape(value) for name, value in re.findall(r'\s([a-z-]+)(?:="([^"]*)")?', tag)}


@override_settings(STATIC_URL="/static/")
def test_the_script_tag_loads_the_module_with_the_api_urls(user: Any) -> None:
    request = request_for(user)
    rendered = render("{% unipost_connect_script %}", request)

    assert rendered.count("<script") == 1 and rendered.strip().endswith("></script>")
    attributes = script_attributes(rendered)
    assert attributes["type"] == "module"
    assert attributes["src"] == "/static/unipost_connect/connect.js"
    assert "data-unipost-connect" in attributes
    assert attributes["data-sessions-url"] == reverse("unipost_connect:api-sessions")
    assert attributes["data-accounts-url"] == reverse("unipost_connect:api-accounts")
    session_id = uuid.uuid4()
    assert attributes["data-session-url"].replace("{id}", str(session_id)) == reverse(
        "unipost_connect:api-session", kwargs={"session_id": session_id}
    )
    assert attributes["data-account-url"].replace("{id}", "42") == reverse(
        "unipost_connect:api-account", kwargs={"account_id": 42}
    )
    # The token for X-CSRFToken, for sites whose CSRF cookie the script cannot read.
    assert len(attributes["data-csrf-token"]) == 64
    assert request.META["CSRF_COOKIE_NEEDS_UPDATE"] is True


def test_without_a_request_the_script_tag_has_no_token() -> None:
    attributes = script_attributes(render("{% unipost_connect_script %}"))
    assert "data-csrf-token" not in attributes
    assert attributes["src"].endswith("unipost_connect/connect.js")


def test_the_session_url_the_tag_gives_answers_the_users_session(
    fake: FakeUniPost, user: Any, user_client: Client
) -> None:
    answer = user_client.post(reverse("unipost_connect:start"), {"platform": "linkedin"})
    assert answer.status_code == 302
    session = ConnectSession.objects.get()
    template = script_attributes(render("{% unipost_connect_script %}", request_for(user)))[
        "data-session-url"
    ]
    got = user_client.get(template.replace("{id}", str(session.pk)))
    assert got.status_code == 200
    assert got.json()["id"] == str(session.pk)


def test_a_popup_button_is_the_same_form_marked_for_the_script(user: Any) -> None:
    request = request_for(user)
    plain = render('{% unipost_connect_button "linkedin" %}', request, csrf_token="tok")
    popup = render('{% unipost_connect_button "linkedin" popup=True %}', request, csrf_token="tok")

    assert "data-unipost-connect-popup" not in plain
    form = '<form method="post" action="/unipost/connect/" class="unipost-connect-form"'
    assert form + " data-unipost-connect-popup>" in popup
    assert popup.replace(" data-unipost-connect-popup", "") == plain
    # The form itself asks for no popup: without the script it is a full-page flow.
    assert 'name="popup"' not in popup
    assert '<input type="hidden" name="next" value="/page/?tab=1">' in popup


def test_popup_false_is_a_plain_button(user: Any) -> None:
    rendered = render('{% unipost_connect_button "linkedin" popup=False %}', request_for(user))
    assert "data-unipost-connect-popup" not in rendered


def test_a_popup_button_without_javascript_is_a_full_page_flow(fake: FakeUniPost, user: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    page = client.get("/unipost/connections/")  # sets the CSRF cookie
    assert page.status_code == 200
    token = client.cookies["csrftoken"].value
    rendered = render('{% unipost_connect_button "linkedin" next="/done/" popup=True %}', request_for(user))
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', rendered))
    assert fields.keys() == {"csrfmiddlewaretoken", "platform", "next"}
    assert (fields["platform"], fields["next"]) == ("linkedin", "/done/")

    answer = client.post(reverse("unipost_connect:start"), {**fields, "csrfmiddlewaretoken": token})

    assert answer.status_code == 302
    session = ConnectSession.objects.get()
    assert answer["Location"] == session.url
    assert session.popup is False


def test_anonymous_pages_get_the_script_too() -> None:
    request = request_for(AnonymousUser())
    attributes = script_attributes(render("{% unipost_connect_script %}", request))
    assert attributes["data-sessions-url"] == reverse("unipost_connect:api-sessions")


def test_connect_js_is_an_es_module_that_also_sets_a_global() -> None:
    source = (STATIC / "connect.js").read_text()
    assert re.search(r"^export function connect\(platform, options = \{\}\)", source, re.M)
    assert "export default UniPostConnect;" in source
    assert "globalThis.UniPostConnect = UniPostConnect;" in source
    assert not re.search(r"^import\b", source, re.M)  # no dependency
    # The popup's page is a classic script (no module syntax), loaded with defer.
    assert not re.search(r"^\s*(export|import)\b", (STATIC / "popup_return.js").read_text(), re.M)
