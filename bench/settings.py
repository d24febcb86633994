"""Django settings for the benchmarks (not the test suite's, not the demo's).

Environment:
  DATABASE_URL        postgres://… to use PostgreSQL; otherwise SQLite
  BENCH_SQLITE_PATH   SQLite file (default: in memory)
  BENCH_API_BASE_URL  the fake UniPost's base URL
  BENCH_RECORD_SIGNALS=1  record completion signals in bench_signalrecord
  BENCH_CONN_MAX_AGE  persistent database connections, seconds (default 60)
"""

import os

SECRET_KEY = "bench-only-not-secret"
DEBUG = False  # DEBUG would keep every query in memory
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "unipost_connect",
    "bench",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "bench.baseline_urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
_db_url = os.environ.get("DATABASE_URL", "")
_conn_max_age = int(os.environ.get("BENCH_CONN_MAX_AGE", "60"))
if _db_url.startswith("postgres"):
    import environ

    DATABASES = {"default": {**environ.Env.db_url_config(_db_url), "CONN_MAX_AGE": _conn_max_age}}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("BENCH_SQLITE_PATH", ":memory:"),
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGIN_URL = "/login/"
STATIC_URL = "static/"
UNIPOST_CONNECT = {
    "API_KEY": os.environ.get("BENCH_API_KEY", "up_test_bench"),
    "API_BASE_URL": os.environ.get("BENCH_API_BASE_URL", "http://127.0.0.1:9"),
    "WEBHOOK_SECRET": os.environ.get("BENCH_WEBHOOK_SECRET", "whsec_bench"),
    "REDIRECT_URL": "/bench/done/",
}
BENCH_RECORD_SIGNALS = os.environ.get("BENCH_RECORD_SIGNALS", "") == "1"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"unipost_connect": {"handlers": ["console"], "level": "ERROR", "propagate": False}},
}
