"""Every code block in README.md is exercised here, so the guide cannot drift.

The quickstart is followed literally in a fresh ``django-admin startproject`` site: the
README's settings and URL line are pasted in, then migrate, ``check``, the button's
template snippet and the whole connect flow against the fake run there.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import django
import pytest
from django.core.management import call_command

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
BLOCK = re.compile(r"^( *)```(\w+)\n(.*?)^\1```", re.S | re.M)


def blocks(language: str) -> list[str]:
    return [textwrap.dedent(body) for _, lang, body in BLOCK.findall(README) if lang == language]


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL")}
    env["PYTHONPATH"] = str(REPO)
    return env


def test_every_block_is_known() -> None:
    """A new block must get a test here: fail loudly when the README grows one."""
    kinds = [lang for _, lang, _ in BLOCK.findall(README)]
    assert kinds.count("python") == 7
    assert kinds.count("django") == 1
    assert kinds.count("sh") == 3  # demo, test, reconcile


def test_the_two_commands_exist_and_are_executable() -> None:
    commands = [block.strip() for block in blocks("sh")[:2]]
    assert commands == ["./scripts/demo", "./scripts/test"]
    for command in commands:
        assert os.access(REPO / command, os.X_OK), command


@pytest.mark.django_db
def test_the_reconcile_command_line_runs(fake, capsys) -> None:
    line = blocks("sh")[2].strip()
    argv = shlex.split(line)
    assert argv[:3] == ["python", "manage.py", "unipost_connect_reconcile"]
    call_command(*argv[2:])
    assert "Reconciled" in capsys.readouterr().out


def test_the_testing_example_passes(tmp_path: Path) -> None:
    example = next(b for b in blocks("python") if "def test_connect_linkedin" in b)
    path = tmp_path / "test_readme_example.py"
    path.write_text(example)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(path),
            "--ds=tests.settings",
            "--rootdir",
            str(tmp_path),
            "-W",
            "error::DeprecationWarning",
        ],
        cwd=REPO,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


FLOW = """
import django
django.setup()
from django.core.management import call_command
from django.template import engines
from django.test import Client, RequestFactory
from django.test.utils import setup_test_environment
from django.urls import reverse
from django.conf import settings
from django.contrib.auth import get_user_model
from unipost_connect.models import ConnectedAccount, ConnectSession
from unipost_connect.testing import FakeUniPost

setup_test_environment()
call_command("migrate", verbosity=0)
conf = settings.UNIPOST_CONNECT
user = get_user_model().objects.create_user("alex", password="pw")

# The README's template snippet renders a POST form with the CSRF token.
request = RequestFactory().get("/")
request.user = user
html = engines["django"].from_string(TEMPLATE).render({"csrf_token": "tok"}, request)
assert 'action="/unipost/connect/"' in html and 'name="platform" value="linkedin"' in html, html
assert "csrfmiddlewaretoken" in html, html

fake = FakeUniPost(api_key=conf["API_KEY"], base_url="https://api.unipost.dev",
                   webhook_secret=conf["WEBHOOK_SECRET"])
with fake.mock():
    client = Client()
    client.force_login(user)
    answer = client.post(reverse("unipost_connect:start"), {"platform": "linkedin"})
    session = ConnectSession.objects.get(user=user)
    assert answer.status_code == 302 and answer["Location"] == session.url
    back = client.get(fake.approve(session.unipost_session_id))
    assert back.status_code == 302, back
    session.refresh_from_db()
    assert session.status == "completed", session.status
    delivery = fake.outbox[-1]
    hook = client.post(reverse("unipost_connect:webhook"), **delivery.django_client_kwargs())
    assert hook.status_code == 200, hook.content
    assert ConnectedAccount.objects.get(user=user).managed_account_id == session.managed_account_id
print("FLOW OK")
"""


@pytest.mark.e2e
def test_a_fresh_startproject_site_following_the_quickstart(tmp_path: Path) -> None:
    env = _clean_env()

    def run(*args: str, cwd: Path) -> str:
        result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=180)
        assert result.returncode == 0, f"{args}: {result.stdout}{result.stderr}"
        return result.stdout + result.stderr

    run(sys.executable, "-m", "django", "startproject", "mysite", str(tmp_path), cwd=tmp_path)
    quickstart = [b for b in blocks("python") if "def " not in b and "TASKS" not in b]
    settings_block, url_block = quickstart
    with open(tmp_path / "mysite" / "settings.py", "a") as settings:
        settings.write("\n# From the README's quickstart:\n" + settings_block)
    urls = (tmp_path / "mysite" / "urls.py").read_text()
    urls = urls.replace("from django.urls import path", "from django.urls import include, path")
    urls += "\n# From the README's quickstart:\nurlpatterns += [\n    " + url_block.strip() + "\n]\n"
    (tmp_path / "mysite" / "urls.py").write_text(urls)

    run(sys.executable, "manage.py", "migrate", "-v0", cwd=tmp_path)
    checked = run(sys.executable, "manage.py", "check", cwd=tmp_path)
    assert "no issues" in checked, checked

    template = blocks("django")[0]
    script = f"TEMPLATE = {template!r}\n" + FLOW
    env["DJANGO_SETTINGS_MODULE"] = "mysite.settings"
    env["PYTHONPATH"] = f"{tmp_path}{os.pathsep}{REPO}"
    out = run(sys.executable, "-c", script, cwd=tmp_path)
    assert "FLOW OK" in out


BUILD_THE_BACKEND = """
import django
from django.core import checks

django.setup()
errors = [m for m in checks.run_checks() if m.level >= checks.ERROR]
assert not errors, errors
from unipost_connect import tasks

backend = tasks.backend()
for job in (tasks.process_webhook_event, tasks.reconcile_session, tasks.sync_account_statuses, tasks.prune):
    backend.validate_task(job.using(queue_name="default"))
assert not tasks.runs_inline()
print("BACKEND", type(backend).__module__, type(backend).__name__)
"""


@pytest.mark.parametrize("engine", ["django-tasks-db", "RQ", "Celery"])
def test_each_scaling_block_builds_its_backend_and_takes_the_apps_tasks(engine: str, tmp_path: Path) -> None:
    """The block, pasted into a site's settings, passes ``check`` and gives a worker
    backend that accepts every task the app enqueues (no broker is contacted)."""
    (block,) = (b for b in blocks("python") if b.startswith(f"# {engine}\n"))
    settings = "import django\nfrom tests.settings import *  # noqa\n" + block
    if engine == "django-tasks-db" and django.VERSION >= (6, 0):
        settings += "INSTALLED_APPS.remove('django_tasks')\n"  # the framework is Django's own
    (tmp_path / "scaled_settings.py").write_text(settings)
    env = _clean_env()
    env["PYTHONPATH"] = f"{tmp_path}{os.pathsep}{REPO}"
    env["DJANGO_SETTINGS_MODULE"] = "scaled_settings"
    result = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-c", BUILD_THE_BACKEND],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    backend = block.split('"BACKEND": "')[1].split('"')[0]
    module, name = backend.rsplit(".", 1)
    assert f"BACKEND {module}" in result.stdout and result.stdout.strip().endswith(name)


def test_the_team_functions_are_what_the_settings_read(settings) -> None:
    from types import SimpleNamespace

    from unipost_connect.conf import app_settings

    (block,) = (b for b in blocks("python") if b.startswith("# myapp/unipost.py"))
    namespace: dict[str, Any] = {}
    exec(block, namespace)
    team = SimpleNamespace(unipost_profile_id="pr_team7")
    admin = SimpleNamespace(membership=SimpleNamespace(team_id=7, is_admin=True, team=team))
    member = SimpleNamespace(membership=SimpleNamespace(team_id=7, is_admin=False, team=team))
    settings.UNIPOST_CONNECT = {
        **settings.UNIPOST_CONNECT,
        "EXTERNAL_USER_ID": namespace["team_key"],
        "PROFILE_ID": namespace["team_profile"],
        "CAN_MANAGE_ACCOUNT": namespace["team_admins_only"],
    }
    assert app_settings.owner_key(admin) == app_settings.owner_key(member) == "team-7"
    assert app_settings.profile_id_for(member, None) == "pr_team7"
    account = SimpleNamespace(external_user_id="team-7")
    assert app_settings.CAN_MANAGE_ACCOUNT(admin, account) is True
    assert app_settings.CAN_MANAGE_ACCOUNT(member, account) is False
    assert app_settings.CAN_MANAGE_ACCOUNT(admin, SimpleNamespace(external_user_id="team-8")) is False


def test_settings_documented_match_the_defaults() -> None:
    """One heading per setting: every key of the settings dict is documented."""
    from unipost_connect.conf import DEFAULTS

    for key in DEFAULTS:
        assert f"`{key}`" in README, f"README does not document {key}"
