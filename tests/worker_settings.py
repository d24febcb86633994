"""The example site on django-tasks-db, for tests/test_task_workers.py.

The load run's settings (bench/demo_settings.py: the example project configured from the
environment, plus the bench app recording every completion / ended signal in a table)
with a real task engine: ``django_tasks_db``'s database backend, whose ``db_worker``
processes apply the webhooks and reconcile the sessions. On Django 5.2 the framework is
the ``django_tasks`` backport, installed as an app too (its checks and logs).

``UNIPOST_DB_APPLICATION_NAME`` names the process's PostgreSQL connections (as
``pg_stat_activity`` shows them), so the test can tell what each worker is doing.
"""

import os

import django

from bench.demo_settings import *  # noqa: F403
from bench.demo_settings import DATABASES, INSTALLED_APPS

_ENGINE = ["django_tasks"] if django.VERSION < (6, 0) else []  # the backport on Django 5.2
INSTALLED_APPS = [*INSTALLED_APPS, *(a for a in [*_ENGINE, "django_tasks_db"] if a not in INSTALLED_APPS)]
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}

_application_name = os.environ.get("UNIPOST_DB_APPLICATION_NAME", "")
if _application_name:
    DATABASES["default"].setdefault("OPTIONS", {})["application_name"] = _application_name
