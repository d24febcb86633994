"""WSGI entry point for the load run: the example project with bench.demo_settings."""

import os
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(_ROOT / "example_project"))
sys.path.insert(0, str(_ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.demo_settings")

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
