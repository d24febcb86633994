"""The German and French catalogues: complete, compiled, and used by every page and
message a user sees.

Every msgid of ``locale/django.pot`` must have a translation in each language; the pages
and the outcome messages, rendered in each language, must not show an English msgid.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import translation

from unipost_connect import user_messages
from unipost_connect.errors import (
    AuthenticationError,
    PlanLimitError,
    RateLimitedError,
    UniPostConnectionError,
    UniPostError,
)
from unipost_connect.models import ConnectedAccount, ConnectSession

LOCALE = Path(__file__).resolve().parents[1] / "unipost_connect" / "locale"
LANGUAGES = ("de", "fr")

# Words that are the same in the language as in English.
SAME_IN = {
    "de": {"Status", "UniPost Connect", "Detail", "Popup", "%(name)s (%(platform)s)"},
    "fr": {"Actions", "UniPost Connect", "%(name)s (%(platform)s)", "session"},
}


_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}


def _unquote(text: str) -> str:
    joined = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', text))
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), joined)


def catalogue_entries() -> list[tuple[str, str]]:
    """(msgid, msgid_plural or "") of every entry of the .pot, the header left out."""
    entries = []
    for block in (LOCALE / "django.pot").read_text().split("\n\n"):
        single = re.search(r'^msgid ((?:".*"\n?)+)', block, re.M)
        if single is None:
            continue
        plural = re.search(r'^msgid_plural ((?:".*"\n?)+)', block, re.M)
        msgid = _unquote(single.group(1))
        if msgid:
            entries.append((msgid, _unquote(plural.group(1)) if plural else ""))
    return entries


ENTRIES = catalogue_entries()


def test_the_catalogue_was_read() -> None:
    assert len(ENTRIES) > 100
    assert ("Your %(platform)s account is connected.", "") in ENTRIES


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_message_has_a_translation(language: str) -> None:
    untranslated = []
    with translation.override(language):
        for msgid, plural in ENTRIES:
            if plural:
                done = (
                    translation.ngettext(msgid, plural, 1) != msgid
                    and translation.ngettext(msgid, plural, 5) != plural
                )
            else:
                done = translation.gettext(msgid) != msgid or msgid in SAME_IN[language]
            if not done:
                untranslated.append(msgid)
    assert untranslated == [], f"translate these in locale/{language}/LC_MESSAGES/django.po"


@pytest.mark.parametrize("language", LANGUAGES)
def test_placeholders_survive_translation(language: str) -> None:
    with translation.override(language):
        for msgid, plural in ENTRIES:
            wanted = sorted(re.findall(r"%\((\w+)\)[sd]", msgid))
            got = translation.ngettext(msgid, plural, 5) if plural else translation.gettext(msgid)
            assert sorted(re.findall(r"%\((\w+)\)[sd]", got)) == wanted, msgid


@pytest.mark.skipif(shutil.which("msgfmt") is None, reason="GNU gettext (msgfmt) is not installed")
@pytest.mark.parametrize("language", LANGUAGES)
def test_the_compiled_catalogue_is_current(language: str, tmp_path: Path) -> None:
    """The shipped .mo is the .po compiled: msgfmt gives the same bytes."""
    source = LOCALE / language / "LC_MESSAGES" / "django.po"
    compiled = tmp_path / "django.mo"
    subprocess.run(["msgfmt", "--check", "-o", str(compiled), str(source)], check=True)
    assert compiled.read_bytes() == (source.with_suffix(".mo")).read_bytes(), (
        f"run: msgfmt -o {source.with_suffix('.mo')} {source}"
    )


def _english_shown(html: str, language: str) -> list[str]:
    """msgids (with a translation of their own) that appear in ``html`` as they are."""
    text = re.sub(r"<[^>]+>", " ", html)
    text = re.sub(r"\s+", " ", text)
    shown = []
    for msgid, _plural in ENTRIES:
        if msgid in SAME_IN[language] or "%" in msgid or len(msgid) < 4:
            continue
        if re.search(rf"(?<![\w-]){re.escape(msgid)}(?![\w-])", text):
            shown.append(msgid)
    return shown


@pytest.mark.django_db
@pytest.mark.parametrize("language", LANGUAGES)
def test_the_connections_page_is_all_in_the_language(language: str, user: Any, fake: Any) -> None:
    for n, status in enumerate(ConnectedAccount.Status.values):
        ConnectedAccount.objects.create(
            user=user,
            platform=["linkedin", "bluesky", "threads"][n],
            managed_account_id=f"sa_{n}",
            external_user_id=str(user.pk),
            status=status,
        )
    for status in ConnectSession.Status.values:
        ConnectSession.objects.create(user=user, platform="linkedin", status=status)
    client = Client(headers={"accept-language": language})
    client.force_login(user)
    with translation.override(language):
        heading = translation.gettext("Connections")
        html = client.get("/unipost/connections/").content.decode()
    assert heading in html and heading != "Connections"
    assert _english_shown(html, language) == []


def _outcomes() -> list[ConnectSession]:
    sessions = []
    for status in ConnectSession.Status.values:
        for return_status, reason in (("", ""), ("error", "access_denied"), ("error", "")):
            sessions.append(
                ConnectSession(
                    platform="linkedin", status=status, return_status=return_status, return_reason=reason
                )
            )
    sessions.append(ConnectSession(platform="linkedin", status="completed", error_code="ACCOUNT_CONFLICT"))
    return sessions


ERRORS: list[UniPostError] = [
    UniPostError("x"),
    UniPostConnectionError("x"),
    RateLimitedError("x"),
    AuthenticationError("x"),
    PlanLimitError("x", code="PLAN_PLATFORM_NOT_ALLOWED"),
    PlanLimitError("x", code="PLAN_LIMIT_REACHED"),
]


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_outcome_and_error_message_is_in_the_language(language: str) -> None:
    with translation.override(language):
        told = [user_messages.message_for_outcome(session)[1] for session in _outcomes()]
        told += [user_messages.message_for_error(error, platform="linkedin") for error in ERRORS]
        told += [user_messages.message_for_disconnect_error(error, platform="linkedin") for error in ERRORS]
        english = {
            msgid % {"platform": "LinkedIn"}
            for msgid, _ in ENTRIES
            if set(re.findall(r"%\((\w+)\)", msgid)) <= {"platform"}
        }
    assert [text for text in told if text in english] == []
    assert all(text for text in told)


@pytest.mark.django_db
@pytest.mark.parametrize("language", LANGUAGES)
def test_the_popup_return_page_is_all_in_the_language(language: str, user: Any, fake: Any) -> None:
    from urllib.parse import urlsplit

    client = Client()
    client.force_login(user)
    with translation.override(language):
        client.post("/unipost/connect/", {"platform": "linkedin", "popup": "1"})
        session = ConnectSession.objects.get()
        target = urlsplit(fake.approve(session.unipost_session_id or "") or "")
        html = client.get(f"{target.path}?{target.query}").content.decode()
        finishing = translation.gettext("Finishing the connection…")
    assert finishing in html and finishing != "Finishing the connection…"
    assert _english_shown(html, language) == []


@pytest.mark.django_db
@pytest.mark.parametrize("language", LANGUAGES)
def test_the_admin_funnel_is_all_in_the_language(language: str, admin_client: Client, user: Any) -> None:
    for status in ConnectSession.Status.values:
        ConnectSession.objects.create(user=user, platform="linkedin", status=status)
    with translation.override(language):
        html = admin_client.get("/admin/unipost_connect/connectsession/funnel/").content.decode()
        title = translation.gettext("Connect funnel")
    assert title in html and title != "Connect funnel"
    assert _english_shown(html, language) == []
