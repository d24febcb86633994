from django.conf import settings
from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def fill_owner_keys(apps, schema_editor):
    """Give every account without an owner key the external user id its session was
    started with (accounts are shared by owner from now on). One with no such session
    keeps an empty key, and stays visible to the user who connected it."""
    ConnectedAccount = apps.get_model("unipost_connect", "ConnectedAccount")
    ConnectSession = apps.get_model("unipost_connect", "ConnectSession")
    db = schema_editor.connection.alias
    started_with = (
        ConnectSession.objects.using(db)
        .filter(managed_account_id=OuterRef("managed_account_id"), user_id=OuterRef("user_id"))
        .exclude(external_user_id="")
        .order_by("-created_at")
        .values("external_user_id")[:1]
    )
    keyless = ConnectedAccount.objects.using(db).filter(external_user_id="")
    for pk, key in keyless.annotate(key=Subquery(started_with)).values_list("pk", "key").iterator():
        if key:
            ConnectedAccount.objects.using(db).filter(pk=pk).update(external_user_id=key)


class Migration(migrations.Migration):
    dependencies = [
        ("unipost_connect", "0005_connect_session_popup"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RunPython(fill_owner_keys, migrations.RunPython.noop),
        migrations.AddIndex(
            model_name="connectedaccount",
            index=models.Index(fields=["external_user_id", "platform"], name="unipost_acc_owner_plat"),
        ),
    ]
