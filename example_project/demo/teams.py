"""The demo's teams: who shares accounts with whom (``EXTERNAL_USER_ID``).

``demo`` and ``alex`` are team Acme and share its accounts; ``sam`` is alone. A real site
would read the team from its own models; the key must never change for an existing team.
"""

from __future__ import annotations

from typing import Any

# username -> team; a user not listed is an owner of their own (keyed as by default).
TEAMS = {"demo": "acme", "alex": "acme"}

# The demo logins (username = password), as demo_setup creates them.
DEMO_USERS = (("demo", "Acme"), ("alex", "Acme"), ("sam", None))


def team_key(user: Any) -> str:
    """A team's key; anyone else keeps the default key, their primary key."""
    team = TEAMS.get(user.get_username())
    return f"team-{team}" if team else str(user.pk)
