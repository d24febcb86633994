from django.conf import settings
from django.db import migrations, models
from django.db.models import Count


def fail_interrupted_starts(apps, schema_editor):
    """Before the constraint: of several rows still starting for one user and target
    (left by processes that died mid-start), keep the newest and fail the others."""
    ConnectSession = apps.get_model("unipost_connect", "ConnectSession")
    starting = ConnectSession.objects.using(schema_editor.connection.alias).filter(
        status="pending", unipost_session_id__isnull=True
    )
    target = ("user_id", "platform", "profile_id", "allow_quickstart_creds")
    groups = starting.values(*target).annotate(n=Count("id")).filter(n__gt=1)
    for group in groups:
        rows = starting.filter(**{name: group[name] for name in target}).order_by("-created_at", "-id")
        stale = [pk for pk in rows.values_list("pk", flat=True)][1:]
        ConnectSession.objects.using(schema_editor.connection.alias).filter(pk__in=stale).update(
            status="failed",
            error_code="START_INTERRUPTED",
            error_message="The request that started this session ended before UniPost answered.",
        )


class Migration(migrations.Migration):
    dependencies = [
        ("unipost_connect", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name="webhookevent",
            name="result",
            field=models.CharField(
                choices=[
                    ("received", "Received"),
                    ("applied", "Applied"),
                    ("unknown_user", "No matching local user"),
                    ("ignored", "Ignored (unknown event)"),
                    ("conflict", "Conflict (not applied)"),
                ],
                default="received",
                max_length=16,
                verbose_name="result",
            ),
        ),
        migrations.RunPython(fail_interrupted_starts, migrations.RunPython.noop, elidable=True),
        migrations.AddConstraint(
            model_name="connectsession",
            constraint=models.UniqueConstraint(
                condition=models.Q(("status", "pending"), ("unipost_session_id__isnull", True)),
                fields=("user", "platform", "profile_id", "allow_quickstart_creds"),
                name="unipost_cs_one_start_in_flight",
            ),
        ),
    ]
