"""Staff views of sessions, accounts and webhook events. Synced state is read-only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from . import services
from .errors import UniPostError
from .models import ConnectedAccount, ConnectSession, WebhookEvent

_BADGE_COLOURS = {
    "pending": ("#8a6d00", "#fff4c2"),
    "completed": ("#1e6b2f", "#d7f5de"),
    "active": ("#1e6b2f", "#d7f5de"),
    "expired": ("#555", "#e8e8e8"),
    "cancelled": ("#7a4b00", "#fde3c0"),
    "failed": ("#8b1a1a", "#fbd9d9"),
    "disconnected": ("#555", "#e8e8e8"),
    "reconnect_required": ("#8b1a1a", "#fbd9d9"),
    "applied": ("#1e6b2f", "#d7f5de"),
    "unknown_user": ("#7a4b00", "#fde3c0"),
    "ignored": ("#555", "#e8e8e8"),
    "received": ("#8a6d00", "#fff4c2"),
}


def badge(value: str, label: str) -> str:
    fg, bg = _BADGE_COLOURS.get(value, ("#333", "#eee"))
    return format_html(
        '<span style="color:{};background:{};padding:1px 6px;border-radius:8px;white-space:nowrap">{}</span>',
        fg, bg, label,
    )


@admin.register(ConnectSession)
class ConnectSessionAdmin(admin.ModelAdmin):
    list_display = (
        "id", "user", "platform", "status_badge", "managed_account_id", "created_at", "expires_at",
    )
    list_filter = ("status", "platform", "created_at")
    search_fields = (
        "user__username", "user__email", "external_user_id", "unipost_session_id", "managed_account_id",
        "request_id",
    )
    list_select_related = ("user",)
    date_hierarchy = "created_at"
    actions = ["refresh_from_unipost"]
    readonly_fields = (
        "id", "user", "platform", "profile_id", "external_user_id", "external_user_email",
        "allow_quickstart_creds", "unipost_session_id", "status", "managed_account_id", "next_url",
        "return_status", "return_reason", "expires_at", "completed_at", "error_code", "error_message",
        "request_id", "created_at", "updated_at", "hosted_url",
    )
    # ``url`` itself is never a field: its state parameter is the user's bearer secret.
    fields = readonly_fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, obj: ConnectSession) -> str:
        return badge(obj.status, obj.get_status_display())

    @admin.display(description=_("hosted url"))
    def hosted_url(self, obj: ConnectSession) -> str:
        """Shown for support only while the session is pending, and only here."""
        if obj.is_pending and obj.url:
            return obj.url
        return "—"

    @admin.action(description=_("Refresh from UniPost"))
    def refresh_from_unipost(self, request: HttpRequest, queryset: QuerySet[ConnectSession]) -> None:
        changed = failed = 0
        for session in queryset.exclude(unipost_session_id=None):
            before = session.status
            try:
                session = services.reconcile_session(session)
            except UniPostError as exc:
                failed += 1
                self.message_user(
                    request,
                    _("Session %(id)s: %(code)s (request id %(rid)s)")
                    % {"id": session.pk, "code": exc.code, "rid": exc.request_id or "—"},
                    messages.ERROR,
                )
                continue
            changed += session.status != before
        self.message_user(
            request,
            ngettext("%(n)d session changed.", "%(n)d sessions changed.", changed) % {"n": changed},
            messages.SUCCESS if not failed else messages.WARNING,
        )


@admin.register(ConnectedAccount)
class ConnectedAccountAdmin(admin.ModelAdmin):
    list_display = ("managed_account_id", "account_name", "user", "platform", "status_badge", "connected_at")
    list_filter = ("status", "platform", "connected_at")
    search_fields = ("user__username", "user__email", "external_user_id", "managed_account_id", "account_name")
    list_select_related = ("user",)
    actions = ["disconnect"]
    readonly_fields = (
        "user", "managed_account_id", "platform", "account_name", "external_user_id", "profile_id",
        "status", "connected_at", "disconnected_at", "created_at", "updated_at",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, obj: ConnectedAccount) -> str:
        return badge(obj.status, obj.get_status_display())

    @admin.action(description=_("Disconnect (in UniPost too)"))
    def disconnect(self, request: HttpRequest, queryset: QuerySet[ConnectedAccount]) -> None:
        done = 0
        for account in queryset.exclude(status=ConnectedAccount.Status.DISCONNECTED):
            try:
                done += services.disconnect_account(account)
            except UniPostError as exc:
                self.message_user(
                    request,
                    _("%(account)s was not disconnected: %(code)s (request id %(rid)s)")
                    % {"account": account, "code": exc.code, "rid": exc.request_id or "—"},
                    messages.ERROR,
                )
        self.message_user(
            request,
            ngettext("%(n)d account disconnected.", "%(n)d accounts disconnected.", done) % {"n": done},
        )


@admin.register(WebhookEvent)
class WebhookEventAdmin(admin.ModelAdmin):
    list_display = ("event_key", "event_type", "result_badge", "received_at", "processed_at")
    list_filter = ("event_type", "result", "received_at")
    search_fields = ("event_key", "delivery_id")
    readonly_fields = (
        "event_key", "event_type", "delivery_id", "payload", "result", "detail", "received_at", "processed_at",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=_("result"), ordering="result")
    def result_badge(self, obj: WebhookEvent) -> str:
        return badge(obj.result, obj.get_result_display())
