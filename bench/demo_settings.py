"""The example project's settings, plus the bench app recording completion signals.

Used by the load run (bench/load_run.py) so that the site under load is the demo site
itself, configured from the environment as documented (UNIPOST_API_BASE_URL, …).
"""

import sys
from pathlib import Path

_EXAMPLE = str(Path(__file__).resolve().parent.parent / "example_project")
if _EXAMPLE not in sys.path:
    sys.path.insert(0, _EXAMPLE)

from demo.settings import *  # noqa: E402,F403
from demo.settings import DATABASES, INSTALLED_APPS, LOGGING  # noqa: E402

INSTALLED_APPS = [*INSTALLED_APPS, "bench"]
BENCH_RECORD_SIGNALS = True
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # logins are not measured
DATABASES["default"]["CONN_MAX_AGE"] = 60
# With DEBUG off Django prints no tracebacks; the load run wants to see any 500's cause.
LOGGING["loggers"]["django.request"] = {"handlers": ["console"], "level": "ERROR", "propagate": False}
