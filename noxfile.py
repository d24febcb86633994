"""The supported-versions matrix. Run through ./scripts/test (which puts pyenv's
interpreters on PATH); an interpreter missing on the machine is reported and skipped."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = False

# (Python, Django) pairs we support and test.
MATRIX = [("3.11", "5.2"), ("3.12", "5.2"), ("3.12", "6.1"), ("3.13", "6.1")]


@nox.session
@nox.parametrize(("python", "django"), MATRIX, ids=[f"py{p}-django{d}" for p, d in MATRIX])
def tests(session: nox.Session, django: str) -> None:
    session.install(f"django~={django}.0", "-e", ".[test]")
    session.run(
        "python",
        "-c",
        "import django, sys; print('Django', django.get_version(), 'on Python', sys.version.split()[0])",
    )
    # Browser and subprocess end-to-end tests run once, in the main run of ./scripts/test.
    session.run(
        "python",
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-m",
        "not browser and not e2e",
        *session.posargs,
    )
