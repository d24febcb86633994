"""Settings for the unipost_connect example project, from the environment or a .env file.

With no UNIPOST_API_BASE_URL the site serves a fake UniPost itself (under /fake-unipost/)
and talks to it over HTTP, so the whole flow works offline.
"""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env")

DEBUG = env.bool("DEBUG", default=True)
SECRET_KEY = env("SECRET_KEY", default="demo-only-insecure-secret-key-change-me")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])

# Where this demo is served; used to reach the embedded fake UniPost.
DEMO_ADDR = env("UNIPOST_DEMO_ADDR", default="127.0.0.1:8000")
API_BASE_URL = env("UNIPOST_API_BASE_URL", default="")
USE_EMBEDDED_FAKE = not API_BASE_URL

UNIPOST_CONNECT = {
    "API_KEY": env("UNIPOST_API_KEY", default="up_test_demo" if USE_EMBEDDED_FAKE else ""),
    "API_BASE_URL": API_BASE_URL or f"http://{DEMO_ADDR}/fake-unipost",
    "WEBHOOK_SECRET": env("UNIPOST_WEBHOOK_SECRET", default="whsec_demo" if USE_EMBEDDED_FAKE else ""),
    "PROFILE_ID": env("UNIPOST_PROFILE_ID", default=None),
    "ALLOW_QUICKSTART_CREDS": env.bool("UNIPOST_ALLOW_QUICKSTART_CREDS", default=USE_EMBEDDED_FAKE),
    "REDIRECT_URL": "/unipost/connections/",
}
UNIPOST_FAKE_WEBHOOK_DELAY = env.float("UNIPOST_FAKE_WEBHOOK_DELAY", default=1.0)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "unipost_connect",
    "demo",
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

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

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
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"unipost_connect": {"handlers": ["console"], "level": "INFO"}},
}
