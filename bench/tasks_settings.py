"""bench/settings.py with a real task engine: django-tasks-db's database backend.

The webhook view then verifies, stores the event ``received`` and enqueues
``process_webhook_event``; ``db_worker`` processes (``python -m django db_worker`` with
these settings) apply it. On Django 5.2 the framework is the ``django_tasks`` backport,
installed as an app too. Used by bench/webhook_ingest_tasks.py and bench/reconcile_enqueue.py.
"""

import django

from bench.settings import *  # noqa: F403
from bench.settings import INSTALLED_APPS

_ENGINE = ["django_tasks"] if django.VERSION < (6, 0) else []
INSTALLED_APPS = [*INSTALLED_APPS, *(a for a in [*_ENGINE, "django_tasks_db"] if a not in INSTALLED_APPS)]
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}
