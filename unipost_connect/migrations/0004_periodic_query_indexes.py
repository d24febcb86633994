"""Indexes for the periodic queries that walked whole tables (plans in bench/README.md,
"Periodic queries at 1M rows"): pruning finished sessions by updated_at, and the replay of
webhook events still to apply (partial: it holds only those rows, a handful however many
applied events are kept)."""

from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("unipost_connect", "0003_webhook_event_failed"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddIndex(
            model_name="connectsession",
            index=models.Index(fields=["updated_at", "id"], name="unipost_cs_updated"),
        ),
        migrations.AddIndex(
            model_name="webhookevent",
            index=models.Index(
                condition=models.Q(("result__in", ["received", "failed"])),
                fields=["id"],
                name="unipost_ev_unprocessed",
            ),
        ),
    ]
