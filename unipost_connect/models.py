"""What the site keeps about its users' connect sessions, accounts and webhook events."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .platforms import CHOICES as PLATFORM_CHOICES


class ConnectSession(models.Model):
    """One trip of one user through UniPost's hosted Connect page."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        COMPLETED = "completed", _("Completed")
        EXPIRED = "expired", _("Expired")
        CANCELLED = "cancelled", _("Cancelled")
        FAILED = "failed", _("Failed")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="unipost_connect_sessions"
    )
    platform = models.CharField(_("platform"), max_length=32, choices=PLATFORM_CHOICES)
    profile_id = models.CharField(_("profile id"), max_length=128, blank=True)
    external_user_id = models.CharField(_("external user id"), max_length=256)
    external_user_email = models.CharField(_("external user email"), max_length=254, blank=True)
    allow_quickstart_creds = models.BooleanField(_("allow quickstart credentials"), default=False)
    unipost_session_id = models.CharField(
        _("UniPost session id"), max_length=128, unique=True, null=True, blank=True
    )
    # The hosted page URL; its ``state`` parameter is a bearer secret for the user only.
    url = models.URLField(_("hosted url"), max_length=2048, blank=True)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.PENDING)
    managed_account_id = models.CharField(_("managed account id"), max_length=128, blank=True)
    next_url = models.CharField(_("next url"), max_length=2048, blank=True)
    # Started from a popup window: the return answers a page that tells the opener.
    popup = models.BooleanField(_("popup"), default=False)
    return_status = models.CharField(
        _("returned connect_status"),
        max_length=32,
        blank=True,
        help_text=_("What the browser's return claimed; a hint, never trusted."),
    )
    return_reason = models.CharField(_("returned reason"), max_length=255, blank=True)
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)
    completed_at = models.DateTimeField(_("completed at"), null=True, blank=True)
    error_code = models.CharField(_("error code"), max_length=64, blank=True)
    error_message = models.TextField(_("error message"), blank=True)
    request_id = models.CharField(_("request id"), max_length=128, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("connect session")
        verbose_name_plural = _("connect sessions")
        ordering = ("-created_at",)
        indexes = (
            models.Index(fields=["user", "platform", "status"], name="unipost_cs_user_plat_st"),
            models.Index(fields=["external_user_id", "platform", "status"], name="unipost_cs_ext_plat_st"),
            models.Index(fields=["status", "created_at"], name="unipost_cs_status_created"),
            # unipost_connect_prune's keyset over finished sessions (retention.old_sessions);
            # without it each batch is a sequential scan of the whole table. Not partial on
            # the finished statuses: SQLite cannot prove a partial index applies to a query
            # with bound parameters, and the few pending rows this old cost a filter only.
            models.Index(fields=["updated_at", "id"], name="unipost_cs_updated"),
        )
        constraints = (
            # One start in flight per user and target: a double click or a second tab
            # waits for the first request's session instead of making another at UniPost
            # (create has no idempotency key). A row is "starting" until UniPost's id is
            # known, then it is an ordinary pending session that later clicks reuse.
            models.UniqueConstraint(
                fields=["user", "platform", "profile_id", "allow_quickstart_creds"],
                condition=models.Q(status="pending", unipost_session_id__isnull=True),
                name="unipost_cs_one_start_in_flight",
            ),
        )

    def __str__(self) -> str:
        return f"{self.get_platform_display()} for {self.user} ({self.status})"

    @property
    def is_pending(self) -> bool:
        return self.status == self.Status.PENDING


class ConnectedAccount(models.Model):
    """A managed account UniPost holds for one of the site's users."""

    class Status(models.TextChoices):
        ACTIVE = "active", _("Active")
        DISCONNECTED = "disconnected", _("Disconnected")
        RECONNECT_REQUIRED = "reconnect_required", _("Reconnect required")

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="unipost_accounts"
    )
    managed_account_id = models.CharField(_("managed account id"), max_length=128, unique=True)
    platform = models.CharField(_("platform"), max_length=32, choices=PLATFORM_CHOICES)
    account_name = models.CharField(_("account name"), max_length=255, blank=True)
    external_user_id = models.CharField(_("external user id"), max_length=256, blank=True)
    profile_id = models.CharField(_("profile id"), max_length=128, blank=True)
    status = models.CharField(_("status"), max_length=32, choices=Status.choices, default=Status.ACTIVE)
    connected_at = models.DateTimeField(_("connected at"), default=timezone.now)
    disconnected_at = models.DateTimeField(_("disconnected at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("connected account")
        verbose_name_plural = _("connected accounts")
        ordering = ("-connected_at",)
        indexes = (
            models.Index(fields=["user", "platform", "status"], name="unipost_acc_user_plat_st"),
            # An owner's accounts (a team's, shared by its members): pages, tags, the API.
            models.Index(fields=["external_user_id", "platform"], name="unipost_acc_owner_plat"),
        )

    def __str__(self) -> str:
        name = self.account_name or self.managed_account_id
        return f"{name} ({self.get_platform_display()})"


class WebhookEvent(models.Model):
    """A verified webhook delivery, stored once per event."""

    class Result(models.TextChoices):
        RECEIVED = "received", _("Received")
        APPLIED = "applied", _("Applied")
        UNKNOWN_USER = "unknown_user", _("No matching local user")
        IGNORED = "ignored", _("Ignored (unknown event)")
        CONFLICT = "conflict", _("Conflict (not applied)")
        FAILED = "failed", _("Failed (to be processed again)")

    # ``event_id`` when UniPost sent one, else ``sha256:<hash of the body>``.
    event_key = models.CharField(_("event key"), max_length=128, unique=True)
    event_type = models.CharField(_("event"), max_length=64, db_index=True)
    delivery_id = models.CharField(_("delivery id"), max_length=128, blank=True)
    payload = models.JSONField(_("payload"))
    result = models.CharField(_("result"), max_length=16, choices=Result.choices, default=Result.RECEIVED)
    detail = models.TextField(_("detail"), blank=True)
    received_at = models.DateTimeField(_("received at"), default=timezone.now, db_index=True)
    processed_at = models.DateTimeField(_("processed at"), null=True, blank=True)

    class Meta:
        verbose_name = _("webhook event")
        verbose_name_plural = _("webhook events")
        ordering = ("-received_at",)
        indexes = (
            # The replay's keyset over events still to apply (webhooks.store
            # .unprocessed_event_ids), from cron every few minutes: only those rows, so it
            # stays tiny however many applied events are kept; without it each run walks
            # every event. (Pruning reads by received_at, whose own index serves it.)
            models.Index(
                fields=["id"],
                condition=models.Q(result__in=["received", "failed"]),
                name="unipost_ev_unprocessed",
            ),
        )

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_key}"
