"""No user-facing string is left unmarked for translation, and the catalogue is current."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.template import engines
from django.template.base import Node, TextNode

APP = Path(__file__).resolve().parents[1] / "unipost_connect"
TEMPLATES = sorted((APP / "templates").rglob("*.html"))
TAG = re.compile(r"<[^>]*>")
ENTITY = re.compile(r"&[a-z]+;|&#\d+;")


def _skeleton(nodes: list[Node]) -> str:
    """The template's literal text in order, every tag or variable replaced by a marker."""
    parts = []
    for node in nodes:
        if isinstance(node, TextNode):
            parts.append(node.s)
            continue
        children = [getattr(node, attr, None) or [] for attr in getattr(node, "child_nodelists", ())]
        if any(children):
            parts.extend(_skeleton(list(child)) for child in children)
        else:
            parts.append("\x00")  # {% translate %}, {{ variable }}, {% url %}…
    return "".join(parts)


def visible_untranslated_text(source: str) -> list[str]:
    template = engines["django"].engine.from_string(source)
    text = _skeleton(list(template.nodelist))
    text = re.sub(r"<(style|script)\b.*?</\1>", " ", text, flags=re.S | re.I)
    text = ENTITY.sub(" ", TAG.sub(" ", text))
    return [word for word in text.replace("\x00", " ").split() if re.search(r"[A-Za-z]{2,}", word)]


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: str(p.relative_to(APP / "templates")))
def test_template_has_no_untranslated_text(path: Path) -> None:
    assert visible_untranslated_text(path.read_text()) == []


def test_the_template_scan_catches_plain_text() -> None:
    source = '{% load i18n %}<p class="x">{% translate "Fine" %}</p><button title="{{ t }}">Send now</button>'
    assert visible_untranslated_text(source) == ["Send", "now"]


def test_templates_were_found() -> None:
    assert len(TEMPLATES) >= 5


# Calls whose string argument reaches a person.
USER_FACING_CALLS = {"error", "warning", "info", "success", "add_message", "message_user", "_tell"}


def _literal_user_messages(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and getattr(func.value, "id", "") in ("logger", "logging"):
            continue  # logs are for operators, not users
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name not in USER_FACING_CALLS:
            continue
        for arg in node.args:
            if (
                isinstance(arg, ast.Constant)
                and isinstance(arg.value, str)
                and re.search(r"[A-Za-z]{2,}", arg.value)
            ):
                found.append(f"line {node.lineno}: {arg.value!r}")
            if isinstance(arg, ast.JoinedStr):
                found.append(f"line {node.lineno}: f-string")
    return found


@pytest.mark.parametrize("module", ["views.py", "admin.py", "user_messages.py"])
def test_python_messages_are_marked(module: str) -> None:
    tree = ast.parse((APP / module).read_text())
    assert _literal_user_messages(tree) == []


def test_the_scan_catches_an_unmarked_message() -> None:
    tree = ast.parse('messages.error(request, "Something broke")\nmessages.info(request, _("ok"))')
    assert _literal_user_messages(tree) == ["line 1: 'Something broke'"]


def test_the_catalogue_template_lists_the_user_messages() -> None:
    pot = (APP / "locale" / "django.pot").read_text()
    for msgid in (
        "Your %(platform)s account is connected.",
        "Connections",
        "Refresh from UniPost",
    ):
        assert f'msgid "{msgid}"' in pot, msgid


@pytest.mark.skipif(shutil.which("xgettext") is None, reason="GNU gettext (xgettext) is not installed")
def test_the_catalogue_template_is_current(tmp_path: Path) -> None:
    """Regenerating the .pot finds no msgid that the committed one lacks."""
    copy = tmp_path / "unipost_connect"
    shutil.copytree(APP, copy, ignore=shutil.ignore_patterns("__pycache__", "locale"))
    (copy / "locale").mkdir()
    subprocess.run(
        [sys.executable, "-m", "django", "makemessages", "--keep-pot", "-l", "en", "-v0"],
        cwd=copy,
        check=True,
        env={"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": ""},
    )
    fresh = set(re.findall(r'^msgid "(.+)"$', (copy / "locale" / "django.pot").read_text(), re.M))
    committed = set(re.findall(r'^msgid "(.+)"$', (APP / "locale" / "django.pot").read_text(), re.M))
    assert fresh - committed == set(), "run: cd unipost_connect && django-admin makemessages --keep-pot -l en"
