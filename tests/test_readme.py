"""Every code block in README.md is exercised here, so the guide cannot drift.

The quickstart is followed literally in a fresh ``django-admin startproject`` site: the
README's settings and URL line are pasted in, then migrate, ``check``, the button's
template snippet and the whole connect flow against the fake run there.
"""

from __future__ import annotations

import html
import os
import re
import shlex
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from functools import partial
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urljoin, urlsplit

import django
import pytest
import requests
from django.core.management import call_command

from tests.example_site import cleanups, free_port, stop, wait_until
from unipost_connect.testing.fake import DEFAULT_API_KEY, DEFAULT_WEBHOOK_SECRET
from unipost_connect.user_messages import message_for_outcome

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
    assert kinds.count("python") == 8
    # the Quickstart's login page, home page, base override; the script tag (Headless)
    assert kinds.count("django") == 4
    # Headless: a page's button, the fetch example, a bundler import, the React hook and
    # its use (checked against connect.js's exports below)
    assert kinds.count("html") == 1
    assert kinds.count("js") == 2
    assert kinds.count("jsx") == 2
    assert kinds.count("css") == 1  # theming
    # demo, test; the Quickstart's install from a checkout, from a wheel, the fake, the
    # site's commands; the fake again in "Testing your site"; reconcile
    assert kinds.count("sh") == 8
    assert kinds.count("text") == 1  # what the fake prints on start


def test_the_two_commands_exist_and_are_executable() -> None:
    commands = [block.strip() for block in blocks("sh")[:2]]
    assert commands == ["./scripts/demo", "./scripts/test"]
    for command in commands:
        assert os.access(REPO / command, os.X_OK), command


def test_the_fake_servers_command_and_what_it_prints() -> None:
    """The section on testing runs the fake as the Quickstart does, and shows what that very
    command prints (the command itself is run in tests/test_fake_server_command.py)."""
    from unipost_connect.testing import FakeUniPost
    from unipost_connect.testing.server import FakeUniPostServer, _parser, banner

    section = README[README.index("\n## Testing your site\n") :]
    section = section[: section.index("\n## ", 1)]
    (command,) = (b.strip() for _, lang, b in BLOCK.findall(section) if lang == "sh")
    (printed,) = (b.strip() for _, lang, b in BLOCK.findall(section) if lang == "text")
    quickstart_fake = next(b.strip() for b in blocks("sh") if "unipost_connect.testing.server" in b)
    assert command == quickstart_fake
    argv = shlex.split(command)
    assert argv[:3] == ["python", "-m", "unipost_connect.testing.server"]
    args = _parser().parse_args(argv[3:])
    fake = FakeUniPost(api_key=args.api_key, webhook_secret=args.webhook_secret)
    server = FakeUniPostServer(fake, args.host, args.port, webhook_url=args.webhook_url)
    assert banner(server) == printed
    for option in _parser()._actions:
        if option.option_strings and option.dest != "help":
            assert f"`{option.option_strings[0]}`" in section, option.option_strings


@pytest.mark.django_db
def test_the_reconcile_command_line_runs(fake, capsys) -> None:
    (line,) = (b.strip() for b in blocks("sh") if "unipost_connect_reconcile" in b)
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


def quickstart() -> str:
    """The README's Quickstart section, up to the next heading of its level."""
    start = README.index("\n## Quickstart\n")
    return README[start : README.index("\n## ", start + 1)]


@dataclass
class Form:
    """A form on a page, as a browser would submit it."""

    action: str
    fields: dict[str, str] = field(default_factory=dict)  # inputs with a name, not buttons
    buttons: list[tuple[str, str]] = field(default_factory=list)  # named submit buttons
    text: str = ""


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self._open: Form | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form":
            self._open = Form(attributes.get("action", ""))
            self.forms.append(self._open)
        elif self._open is not None and attributes.get("name"):
            if tag == "input" and attributes.get("type", "text") not in ("submit", "checkbox", "radio"):
                self._open.fields[attributes["name"]] = attributes.get("value", "")
            elif tag == "button":
                self._open.buttons.append((attributes["name"], attributes.get("value", "")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._open = None

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._open.text += data


def forms(page: requests.Response) -> list[Form]:
    parser = _FormParser()
    parser.feed(page.text)
    return parser.forms


def the_form(page: requests.Response, **having: str) -> Form:
    """The one form on ``page`` whose fields include ``having``."""
    (found,) = (f for f in forms(page) if all(f.fields.get(k) == v for k, v in having.items()))
    return found


def submit(
    browser: requests.Session, page: requests.Response, form: Form, button: tuple[str, str] | None = None
) -> requests.Response:
    """Press ``button`` (or the form's only unnamed one) on ``page``; redirects not followed."""
    data = dict(form.fields)
    if button is not None:
        assert button in form.buttons, (button, form.buttons)
        data[button[0]] = button[1]
    return browser.post(urljoin(page.url, form.action), data=data, allow_redirects=False, timeout=20)


def hop(browser: requests.Session, answer: requests.Response) -> requests.Response:
    """Follow one redirect, as the browser would."""
    assert answer.status_code == 302, (answer.status_code, answer.url, answer.text[:2000])
    return browser.get(urljoin(answer.url, answer.headers["Location"]), allow_redirects=False, timeout=20)


def _venv_env(bin_dir: Path) -> dict[str, str]:
    """The caller's environment without anything that would lead a process in the fresh
    virtualenv to the checkout (PYTHONPATH) or to the test suite's settings."""
    drop = ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("UNIPOST_")}
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        PYTHONUNBUFFERED="1",
        PYTHONDONTWRITEBYTECODE="1",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )
    return env


USERNAME, PASSWORD = "alex", "a-long-pass-phrase-9"


@pytest.mark.e2e
def test_a_fresh_startproject_site_following_the_quickstart(tmp_path: Path) -> None:
    """The Quickstart, followed literally from the built wheel in a fresh virtualenv.

    Its commands run as written, with these substitutions only: the checkout's path for
    ``path/to/unipost_connect``; this suite's interpreter (which has ``build``) for the
    wheel build, so the block's ``pip install build`` is skipped; free loopback ports for
    8001 and 8000; ``createsuperuser --noinput`` with the password in the environment;
    ``runserver --noreload`` on the site's port. Its code blocks are written into the
    ``startproject`` site as they stand, each where its first line says; nothing else is.
    Then a whole connect over HTTP against the standalone fake, as a browser would do it:
    a logged-out visitor's Connect ends on the login page; logged in, a declined connect
    comes back to the home page with its message; an approved one from the ready-made
    page (restyled by the README's override of its base template) comes back there with
    the account and the success message, and the fake's signed webhook is accepted.
    """
    text = quickstart()
    steps = [(lang, textwrap.dedent(body)) for _, lang, body in BLOCK.findall(text)]
    editable, wheel, fake_block, site_block = (body.strip() for lang, body in steps if lang == "sh")
    assert editable == "python -m pip install -e path/to/unipost_connect"
    get_build, build_line, install_line = wheel.splitlines()
    assert get_build == "python -m pip install build"
    assert "`django-admin startproject mysite .`" in text

    venv = tmp_path / "venv"
    bin_dir = venv / "bin"
    env = _venv_env(bin_dir)
    site = tmp_path / "site"
    site.mkdir()

    def command(line: str, python: str | Path = bin_dir / "python") -> list[str]:
        argv = [str(python) if arg == "python" else arg for arg in shlex.split(line)]
        return [arg.replace("path/to/unipost_connect", str(REPO)) for arg in argv]

    def run(argv: list[str], cwd: Path, extra: dict[str, str] | None = None) -> str:
        done = subprocess.run(
            argv, cwd=cwd, env={**env, **(extra or {})}, capture_output=True, text=True, timeout=240
        )
        assert done.returncode == 0, f"{argv}:\n{done.stdout}{done.stderr}"
        return done.stdout + done.stderr

    # 1. Install: the wheel, built from the checkout, into a virtualenv of its own.
    run(command(build_line, python=sys.executable), cwd=tmp_path)
    run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    install = command(install_line)
    (wheel_file,) = tmp_path.glob(install[-1])
    run([*install[:-1], str(wheel_file)], cwd=tmp_path)
    where = run(
        [str(bin_dir / "python"), "-c", "import unipost_connect; print(unipost_connect.__file__)"], site
    )
    assert str(venv) in where and "site-packages" in where, where

    # 2-4. The site, and every code block of the Quickstart written where it says.
    run([str(bin_dir / "django-admin"), "startproject", "mysite", "."], cwd=site)
    applied = []
    for lang, body in steps:
        if lang == "sh":
            continue
        first = body.partition("\n")[0]
        how = re.fullmatch(r"# (\S+): (add at the end|the whole file)|\{# (\S+) #\}", first)
        assert how, f"a Quickstart block that does not say where it goes: {first!r}"
        target = site / (how[1] or how[3])
        target.parent.mkdir(parents=True, exist_ok=True)
        if how[2] == "add at the end":
            with target.open("a") as settings:
                settings.write("\n" + body)
        else:
            target.write_text(body)
        applied.append(how[1] or how[3])
    assert applied == [
        "mysite/settings.py",
        "mysite/urls.py",
        "templates/registration/login.html",
        "templates/home.html",
        "templates/unipost_connect/base.html",
    ]

    # 5. Run it: the fake in one terminal, the site's commands in another.
    fake_port = free_port()
    site_port = free_port()
    assert fake_port != site_port
    fake_url, site_url = f"http://127.0.0.1:{fake_port}", f"http://127.0.0.1:{site_port}"
    fake_argv = command(fake_block)
    fake_argv[fake_argv.index("--port") + 1] = str(fake_port)
    fake_argv = [arg.replace("127.0.0.1:8000", f"127.0.0.1:{site_port}") for arg in fake_argv]
    lines = site_block.splitlines()
    exported = shlex.split(lines[0])
    assert exported[0] == "export"
    site_env = dict(assignment.split("=", 1) for assignment in exported[1:])
    assert site_env == {
        "UNIPOST_API_BASE_URL": "http://127.0.0.1:8001",
        "UNIPOST_API_KEY": DEFAULT_API_KEY,
        "UNIPOST_WEBHOOK_SECRET": DEFAULT_WEBHOOK_SECRET,
    }
    site_env["UNIPOST_API_BASE_URL"] = fake_url

    with cleanups() as finalizers:
        fake_log_path, site_log_path = tmp_path / "fake.log", tmp_path / "site.log"
        fake_log, site_log = fake_log_path.open("ab"), site_log_path.open("ab")
        finalizers += [fake_log.close, site_log.close]

        def logs() -> str:
            fake_text = fake_log_path.read_text(errors="replace")
            site_text = site_log_path.read_text(errors="replace")
            return f"\n-- fake:\n{fake_text[-3000:]}\n-- site:\n{site_text[-6000:]}"

        fake = subprocess.Popen(fake_argv, cwd=site, env=env, stdout=fake_log, stderr=subprocess.STDOUT)
        finalizers.append(partial(stop, fake))
        listening = f"listening on {fake_url}"
        assert wait_until(lambda: listening in fake_log_path.read_text() or fake.poll() is not None, 20)
        assert fake.poll() is None, logs()
        # What the fake prints to point a site at it is the README's export line.
        (printed,) = (line for line in fake_log_path.read_text().splitlines() if "export " in line)
        assert printed.strip() == lines[0].replace("127.0.0.1:8001", f"127.0.0.1:{fake_port}")

        ran = []
        for line in lines[1:]:
            argv = command(line)
            ran.append(argv[2])
            if argv[2] == "createsuperuser":
                argv += ["--noinput", "--username", USERNAME, "--email", f"{USERNAME}@example.com"]
                run(argv, site, {**site_env, "DJANGO_SUPERUSER_PASSWORD": PASSWORD})
            elif argv[2] == "runserver":
                argv += ["--noreload", f"127.0.0.1:{site_port}"]
                server = subprocess.Popen(
                    argv, cwd=site, env={**env, **site_env}, stdout=site_log, stderr=subprocess.STDOUT
                )
                finalizers.append(partial(stop, server))
            else:
                out = run(argv, site, site_env)
                if argv[2] == "check":
                    assert "System check identified no issues" in out, out
        assert ran == ["migrate", "check", "createsuperuser", "runserver"]

        def answers() -> bool:
            if server.poll() is not None:
                return True
            try:
                return requests.get(site_url + "/", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        assert wait_until(answers, 30) and server.poll() is None, logs()

        # A logged-out visitor presses Connect on the home page: the login page.
        browser = requests.Session()
        home = browser.get(site_url + "/", timeout=10)
        assert home.status_code == 200, logs()
        login_page = hop(browser, submit(browser, home, the_form(home, platform="linkedin")))
        assert login_page.status_code == 200, (login_page.status_code, login_page.url, logs())
        assert urlsplit(login_page.url).path == "/accounts/login/"
        login = the_form(login_page, next="/")
        login.fields.update(username=USERNAME, password=PASSWORD)
        logged_in = submit(browser, login_page, login)
        assert logged_in.status_code == 302 and logged_in.headers["Location"] == "/", logs()

        # Logged in: Connect, declined on the fake's hosted page, back on the home page
        # with the message the home page's template shows.
        home = hop(browser, logged_in)
        hosted = hop(browser, submit(browser, home, the_form(home, platform="linkedin")))
        assert hosted.status_code == 200 and hosted.url.startswith(fake_url + "/connect/"), logs()
        (choice,) = forms(hosted)
        returned = submit(browser, hosted, choice, ("action", "deny"))
        assert returned.headers.get("Location", "").startswith(site_url + "/unipost/return/"), logs()
        back_home = hop(browser, hop(browser, returned))
        assert back_home.status_code == 200 and back_home.url == site_url + "/", logs()
        declined = SimpleNamespace(status="cancelled", platform="linkedin", error_code="")
        assert html.escape(message_for_outcome(declined)[1]) in back_home.text, back_home.text

        # From the ready-made page, with the site's CSS added: Connect, Approve, and back
        # there with the account and the success message.
        connections_url = site_url + "/unipost/connections/"
        page = browser.get(connections_url, timeout=10)
        assert page.status_code == 200, logs()
        assert "body { font-family: system-ui, sans-serif;" in page.text  # the site's own CSS
        hosted = hop(browser, submit(browser, page, the_form(page, platform="linkedin")))
        assert hosted.url.startswith(fake_url + "/connect/"), logs()
        (choice,) = forms(hosted)
        account_name = choice.fields["account_name"]
        back = hop(browser, hop(browser, submit(browser, hosted, choice, ("action", "approve"))))
        assert back.status_code == 200 and back.url == connections_url, logs()
        connected = SimpleNamespace(status="completed", platform="linkedin", error_code="")
        assert html.escape(message_for_outcome(connected)[1]) in back.text, back.text
        assert "LinkedIn" in back.text

        # The fake's signed webhook reaches the site and is accepted; the name shows.
        def webhook_accepted() -> bool:
            return re.search(r'"POST /unipost/webhook/ HTTP/1\.1" 200', site_log_path.read_text()) is not None

        assert wait_until(webhook_accepted, 20), logs()
        assert html.escape(account_name) in browser.get(connections_url, timeout=10).text


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


CONNECT_JS = (REPO / "unipost_connect" / "static" / "unipost_connect" / "connect.js").read_text()


def test_the_script_tag_block_renders_the_module_with_the_api_urls(rf: Any, db: Any) -> None:
    from django.contrib.auth.models import AnonymousUser
    from django.template import engines

    (block,) = (b for b in blocks("django") if "unipost_connect_script" in b)
    request = rf.get("/")
    request.user = AnonymousUser()
    html = engines["django"].from_string(block).render({}, request)
    assert 'type="module"' in html and "unipost_connect/connect.js" in html
    assert 'data-sessions-url="/unipost/api/sessions/"' in html
    assert 'data-session-url="/unipost/api/sessions/{id}/"' in html


def test_the_script_examples_use_only_what_connect_js_offers() -> None:
    """Every ``UniPostConnect.x`` and every name imported from connect.js in the README's
    examples is one the script exports; every option passed to connect() is one it reads."""
    exported = set(re.findall(r"^export (?:async )?(?:function|class) (\w+)", CONNECT_JS, re.M))
    examples = "\n".join(blocks("html") + blocks("js") + blocks("jsx"))
    used = set(re.findall(r"UniPostConnect\.(\w+)", examples))
    for names in re.findall(r"import \{([^}]+)\} from \"[^\"]*connect\.js\"", examples):
        used |= {name.strip() for name in names.split(",")}
    assert used and used <= exported, used - exported
    for option in re.findall(r"^\s+(on\w+)\(", examples, re.M):
        assert re.search(rf"\b{option}\b", CONNECT_JS), option
    # The fetch example calls the API's real paths.
    fetch = next(b for b in blocks("js") if "fetch(" in b)
    assert "/unipost/api/sessions/" in fetch


def test_the_theming_block_and_list_name_only_properties_the_stylesheet_has() -> None:
    css = (REPO / "unipost_connect" / "static" / "unipost_connect" / "connections.css").read_text()
    card = (
        REPO / "unipost_connect" / "templates" / "unipost_connect" / "includes" / "platform_card.html"
    ).read_text()
    defined = set(re.findall(r"(--upc-[a-z-]+):", css + card))  # each card sets --upc-brand
    (block,) = blocks("css")
    section = README.split("## Theming the pages", 1)[1].split("![", 1)[0]
    named = set(re.findall(r"--upc-[a-z-]+", block + section))
    named = {n for n in named if not n.endswith("-")}  # "--upc-success-*" and the like
    assert named and named <= defined, named - defined
    for family in ("--upc-success-", "--upc-error-", "--upc-info-"):
        assert any(name.startswith(family) for name in defined), family


def test_the_screenshots_the_readme_shows_are_committed() -> None:
    for path in re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", README):
        assert (REPO / path).is_file(), path


@pytest.mark.django_db
def test_the_funnel_example_prints_the_figures(user: Any, capsys: Any) -> None:
    from unipost_connect.models import ConnectSession

    ConnectSession.objects.create(user=user, platform="linkedin", status="completed")
    ConnectSession.objects.create(user=user, platform="linkedin", status="expired")
    (block,) = (b for b in blocks("python") if "funnel.funnels()" in b)
    exec(block, {})
    out = capsys.readouterr().out
    assert "LinkedIn 2 1 50" in out
    assert out.strip().splitlines()[-1] == "0.5"
