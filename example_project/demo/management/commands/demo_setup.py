from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from demo.teams import DEMO_USERS, team_key
from unipost_connect.models import ConnectedAccount


class Command(BaseCommand):
    help = (
        "Create the demo logins: demo / demo (a superuser, so the admin works too) and alex / alex "
        "in team Acme, sam / sam on his own."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        for username, team in DEMO_USERS:
            staff = username == "demo"
            user, created = User.objects.get_or_create(
                username=username,
                defaults={"email": f"{username}@example.com", "is_staff": staff, "is_superuser": staff},
            )
            if created:
                user.set_password(username)
                user.save()
            # A demo database from before teams: its accounts move to the user's team key.
            if team_key(user) != str(user.pk):
                ConnectedAccount.objects.filter(user=user, external_user_id=str(user.pk)).update(
                    external_user_id=team_key(user)
                )
            where = f"team {team}" if team else "on his own"
            self.stdout.write(
                f"Demo login: {username} / {username} ({where})" + (" (created)" if created else "")
            )
