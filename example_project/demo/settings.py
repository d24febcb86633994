"""Settings for the unipost_connect example project, from the environment or a .env file.

Every setting below reads an environment variable; a ``.env`` file beside manage.py
(or the file named by ``ENV_FILE``) fills in whatever the environment does not set.
``.env.example`` lists them all.

With no UNIPOST_API_BASE_URL the site serves a fake UniPost itself (under /fake-unipost/)
and talks to it over HTTP, so the whole flow works offline.
"""

from pathlib import Path

import django
import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
_env_file = Path(env.str("ENV_FILE", default=str(BASE_DIR / ".env")))
if _env_file.is_file():  # the environment wins over the file
    environ.Env.read_env(_env_file)

INSECURE_DEMO_KEY = "demo-only-insecure-secret-key-change-me"
DEBUG = env.bool("DEBUG", default=True)
SECRET_KEY = env.str("SECRET_KEY", default=INSECURE_DEMO_KEY)
if not DEBUG and SECRET_KEY == INSECURE_DEMO_KEY:
    raise ImproperlyConfigured("Set SECRET_KEY (a long random string) when DEBUG is off.")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Django's default Cross-Origin-Opener-Policy is "same-origin": a popup that goes to another
# origin is then cut off from this site's pages, and connect.js copes. "same-origin-allow-popups"
# keeps such a popup reachable (unless the hosted page sends its own); "none" sends no header.
_coop = env.str("UNIPOST_DEMO_COOP", default="same-origin")
SECURE_CROSS_ORIGIN_OPENER_POLICY = None if _coop in ("", "none") else _coop

# Where this demo is served; used to reach the embedded fake UniPost.
DEMO_ADDR = env.str("UNIPOST_DEMO_ADDR", default="127.0.0.1:8000")
API_BASE_URL = env.str("UNIPOST_API_BASE_URL", default="")
USE_EMBEDDED_FAKE = not API_BASE_URL

UNIPOST_CONNECT = {
    # The embedded fake accepts the demo's own key; a real UniPost needs yours.
    "API_KEY": env.str("UNIPOST_API_KEY", default="up_test_demo" if USE_EMBEDDED_FAKE else ""),
    "API_BASE_URL": API_BASE_URL or f"http://{DEMO_ADDR}/fake-unipost",
    # Several secrets, comma-separated, let a secret be rotated without downtime.
    "WEBHOOK_SECRET": env.list("UNIPOST_WEBHOOK_SECRET", default=["whsec_demo"] if USE_EMBEDDED_FAKE else []),
    "PROFILE_ID": env.str("UNIPOST_PROFILE_ID", default="") or None,
    "ALLOW_QUICKSTART_CREDS": env.bool("UNIPOST_ALLOW_QUICKSTART_CREDS", default=USE_EMBEDDED_FAKE),
    "RETURN_BASE_URL": env.str("UNIPOST_RETURN_BASE_URL", default="") or None,
    "REDIRECT_URL": "/unipost/connections/",
    # Teams: demo and alex share team Acme's accounts; sam has his own (demo/teams.py).
    "EXTERNAL_USER_ID": "demo.teams.team_key",
}
# The embedded fake POSTs its signed webhooks this many seconds after the hosted page
# completes (negative: never; unset: the fake's own default), to this site's webhook URL
# unless told otherwise.
UNIPOST_FAKE_WEBHOOK_DELAY = env.float("UNIPOST_FAKE_WEBHOOK_DELAY", default=None)
UNIPOST_FAKE_WEBHOOK_URL = env.str("UNIPOST_FAKE_WEBHOOK_URL", default="") or None
# A Cross-Origin-Opener-Policy the embedded fake's hosted page sends (e.g. "same-origin"),
# to try the popup flow of the "Headless" page cut off from its opener.
UNIPOST_FAKE_HOSTED_COOP = env.str("UNIPOST_FAKE_HOSTED_COOP", default="") or None

INSTALLED_APPS = [
    "demo",  # first, so its templates override the app's (e.g. unipost_connect/base.html)
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "unipost_connect",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "demo.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]
WSGI_APPLICATION = "demo.wsgi.application"

# SQLite beside manage.py unless DATABASE_URL names another database, e.g.
# postgres://user:password@127.0.0.1:5432/unipost_demo
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Where the app's tasks run (issue 11). Unset: Django's ImmediateBackend runs them at once,
# inside the request. ``scripts/demo --workers`` (or UNIPOST_DEMO_WORKERS=true) queues them
# in the database with django-tasks-db instead, and runs ``manage.py db_worker`` beside
# runserver: a webhook is stored "received" and the worker applies it.
DEMO_WORKERS = env.bool("UNIPOST_DEMO_WORKERS", default=False)
if DEMO_WORKERS:
    if django.VERSION < (6, 0):
        INSTALLED_APPS.append("django_tasks")  # the backport of django.tasks: its checks and logs
    INSTALLED_APPS.append("django_tasks_db")
    TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}
    _db = DATABASES["default"]
    if _db["ENGINE"] == "django.db.backends.sqlite3":
        _name = str(_db.get("NAME", ""))
        if _name in ("", ":memory:") or "mode=memory" in _name:
            raise ImproperlyConfigured(
                "UNIPOST_DEMO_WORKERS needs a database the worker process shares: "
                "a SQLite file (or PostgreSQL) in DATABASE_URL, not an in-memory SQLite."
            )
        # Two processes write to one file: wait for the other's lock instead of failing at
        # once, and take the write lock when a transaction starts (no failed upgrade mid-way).
        _db.setdefault("OPTIONS", {}).update(timeout=20, transaction_mode="IMMEDIATE")

LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/unipost/connections/"
LOGOUT_REDIRECT_URL = "login"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact_state": {"()": "demo.log_filters.RedactHostedState"}},
    "formatters": {
        "django.server": {
            "()": "django.utils.log.ServerFormatter",
            "format": "[{server_time}] {message}",
            "style": "{",
        },
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler"},
        "django.server": {
            "class": "logging.StreamHandler",
            "formatter": "django.server",
            "filters": ["redact_state"],
        },
    },
    "loggers": {
        "django.server": {"handlers": ["django.server"], "level": "INFO", "propagate": False},
        "unipost_connect": {"handlers": ["console"], "level": env.str("UNIPOST_LOG_LEVEL", default="INFO")},
    },
}
