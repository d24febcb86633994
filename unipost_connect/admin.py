"""Staff views of sessions, accounts and webhook events. Synced state is read-only."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist, PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.db.models.constants import LOOKUP_SEP
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from . import funnel, services, tasks
from .conf import app_settings
from .errors import UniPostError
from .models import ConnectedAccount, ConnectSession, WebhookEvent
from .redaction import redact_state

# The changelists' column widths (nothing wraps at 1280 px) and the funnel's colours.
ADMIN_CSS = "unipost_connect/admin.css"
# An action names at most this many failures one by one; the summary counts them all
# (a cookie holds the messages, and a hundred of them would not fit).
LISTED_FAILURES = 5

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
    "conflict": ("#8b1a1a", "#fbd9d9"),
    "received": ("#8a6d00", "#fff4c2"),
}


def badge(value: str, label: str) -> str:
    fg, bg = _BADGE_COLOURS.get(value, ("#333", "#eee"))
    return format_html(
        '<span style="color:{};background:{};padding:1px 6px;border-radius:8px;white-space:nowrap">{}</span>',
        fg,
        bg,
        label,
    )


def _error_text(exc: UniPostError) -> str:
    return _("%(reason)s, request id %(rid)s") % {"reason": _reason(exc), "rid": exc.request_id or "—"}


def _reason(exc: UniPostError) -> str:
    """What went wrong, without the request id: the same for every call UniPost refused alike."""
    status = f"HTTP {exc.status}" if exc.status is not None else _("no answer")
    return f"{exc.code}, {status}"


def _reasons(reasons: Counter[str]) -> str:
    """``"2 × INTERNAL_ERROR, HTTP 500; RATE_LIMITED, HTTP 429"``, the commonest first."""  # noqa: RUF002
    return "; ".join(reason if n == 1 else f"{n} × {reason}" for reason, n in reasons.most_common())  # noqa: RUF001


def short_time(value: datetime | None, *, after: datetime | None = None) -> str | None:
    """A narrow, unambiguous local time for a changelist: "2026-12-01 14:05", or "14:35"
    alone when it is less than a day after ``after`` (an expiry after its creation:
    the date follows). The site's own long format is in its tooltip."""
    if value is None:
        return None  # the admin's empty value
    local = timezone.localtime(value)
    time_only = after is not None and timedelta(0) <= value - after < timedelta(days=1)
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        value.isoformat(),
        date_format(local, "DATETIME_FORMAT"),
        local.strftime("%H:%M" if time_only else "%Y-%m-%d %H:%M"),
    )


def short_id(value: object, length: int = 8) -> str:
    """The first ``length`` characters of an id, the whole id in a tooltip."""
    text = value.hex if isinstance(value, uuid.UUID) else str(value)
    if len(text) <= length + 2:
        return format_html('<span class="unipost-id">{}</span>', text)
    return format_html('<span class="unipost-id" title="{}">{}…</span>', value, text[:length])


if TYPE_CHECKING:
    # django-stubs makes ModelAdmin generic in its model; Django's class cannot be
    # subscripted at runtime (that needs django-stubs-ext's monkeypatch, not a dependency).
    _SyncedAdminBase = admin.ModelAdmin[ConnectSession | ConnectedAccount]
    _WebhookEventAdminBase = admin.ModelAdmin[WebhookEvent]
    _CheckedSelectionBase = admin.ModelAdmin[Any]
else:
    _SyncedAdminBase = _WebhookEventAdminBase = admin.ModelAdmin
    _CheckedSelectionBase = object


class CheckedSelectionMixin(_CheckedSelectionBase):
    """Refuse an action whose selection holds an id this model's primary key cannot be.

    Django's ``response_action`` filters ``pk__in=<the posted ids>`` as they came; an id
    the pk field cannot take ("abc" for an integer, "not-a-uuid" for a UUID, a number
    beyond the column) raises there, and a crafted or stale POST would answer a 500.
    """

    def response_action(
        self, request: HttpRequest, queryset: QuerySet[Any], *args: Any, **kwargs: Any
    ) -> HttpResponse | None:  # *args: Django 6 adds ``action_location``
        pk = self.model._meta.pk
        assert pk is not None  # every concrete model has one
        for value in request.POST.getlist(helpers.ACTION_CHECKBOX_NAME):
            try:
                pk.clean(value, None)  # to_python and the column's range validators
            except ValidationError:
                # Nothing runs on part of a selection: the staff member picks again.
                self.message_user(
                    request,
                    _(
                        "The selection is not valid (it holds an id that no %(model)s can have), "
                        "so nothing was changed. Select the rows in the list again."
                    )
                    % {"model": self.model._meta.verbose_name},
                    messages.ERROR,
                )
                return HttpResponseRedirect(request.get_full_path())
        return super().response_action(request, queryset, *args, **kwargs)


class ActionReport:
    """What an action over a selection did: how many it checked, did, and why others failed.

    :meth:`tell` says it in one summary first, then names the first
    :data:`LISTED_FAILURES` failures one by one (with their request ids for support).
    """

    def __init__(self) -> None:
        self.checked = 0
        self.done = 0
        self.skipped = 0
        self.reasons: Counter[str] = Counter()
        self.details: list[str] = []

    @property
    def failures(self) -> int:
        return self.reasons.total()

    def failed(self, exc: UniPostError, detail: str) -> None:
        self.reasons[_reason(exc)] += 1
        self.details.append(detail)

    def tell(self, model_admin: admin.ModelAdmin[Any], request: HttpRequest, summary: str) -> None:
        """``summary`` is formatted with ``checked``, ``done``, ``skipped``, ``failed`` and
        ``reasons``."""
        counts = {
            "checked": self.checked,
            "done": self.done,
            "skipped": self.skipped,
            "failed": self.failures,
            "reasons": _reasons(self.reasons),
        }
        model_admin.message_user(
            request, summary % counts, messages.WARNING if self.failures else messages.SUCCESS
        )
        for detail in self.details[:LISTED_FAILURES]:
            model_admin.message_user(request, detail, messages.ERROR)
        unlisted = len(self.details) - LISTED_FAILURES
        if unlisted > 0:
            model_admin.message_user(
                request,
                ngettext(
                    "%(count)d more failure is not listed; each row keeps its error.",
                    "%(count)d more failures are not listed; each row keeps its error.",
                    unlisted,
                )
                % {"count": unlisted},
                messages.ERROR,
            )


class SyncedAdmin(CheckedSelectionMixin, _SyncedAdminBase):
    """Every field is synced from UniPost (or the flow): viewable, never saved from a form.

    A POST to the change page saves nothing: ``ModelAdmin.save_model`` would write the
    whole row as loaded, and could put back a stale status over a completion the
    webhook or the return recorded meanwhile.
    """

    class Media:
        css: ClassVar[dict[str, tuple[str, ...]]] = {"all": (ADMIN_CSS,)}

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_search_fields(self, request: HttpRequest) -> tuple[str, ...]:
        # The owner by the site's own user model, not a hard-coded ``username``.
        return (*user_search_fields(), *super().get_search_fields(request))

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        if request.method == "POST" and object_id is not None:
            self.message_user(
                request, _("Nothing to save: these fields are kept in sync with UniPost."), messages.INFO
            )
            return HttpResponseRedirect(request.get_full_path())
        context = {
            **(extra_context or {}),
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
        }
        return super().changeform_view(request, object_id, form_url, context)


def user_search_fields() -> tuple[str, ...]:
    """``user__<login field>`` and ``user__<email field>`` of whatever user model the site has."""
    user_model = get_user_model()
    names = [user_model.USERNAME_FIELD, user_model.get_email_field_name()]
    return tuple(f"user__{name}" for name in dict.fromkeys(names) if _has_field(user_model, name))


def _has_field(model: Any, name: str) -> bool:
    try:
        model._meta.get_field(name)
    except FieldDoesNotExist:
        return False
    return True


@admin.register(ConnectSession)
class ConnectSessionAdmin(SyncedAdmin):
    # Narrow columns, who and what first: at 1280 px, with the navigation sidebar and the
    # filters open, the table has ~630 px and every row stays on one line. The managed
    # account id is on the session's page (and found by the search).
    list_display = (
        "session_id",
        "who",
        "platform",
        "status_badge",
        "created",
        "expires",
        "error",
    )
    list_filter = ("status", "platform", "profile_id", "created_at")
    search_fields = (
        "external_user_email",
        "external_user_id",
        "unipost_session_id",
        "managed_account_id",
        "request_id",
    )
    list_select_related = ("user",)
    date_hierarchy = "created_at"
    actions = ("refresh_from_unipost",)
    readonly_fields = (
        "id",
        "user",
        "platform",
        "profile_id",
        "external_user_id",
        "external_user_email",
        "allow_quickstart_creds",
        "unipost_session_id",
        "status",
        "managed_account_id",
        "next_url",
        "return_status",
        "return_reason",
        "expires_at",
        "completed_at",
        "error_code",
        "error_message",
        "request_id",
        "created_at",
        "updated_at",
        "hosted_url",
    )
    # ``url`` itself is never a field: its state parameter is the user's bearer secret.
    fields = readonly_fields
    # Nor may the changelist filter on it: ``?url__startswith=…state=a`` would tell staff
    # the secret one character at a time.
    secret_fields = frozenset({"url"})

    def __init__(self, model: type[ConnectSession], admin_site: admin.AdminSite) -> None:
        super().__init__(model, admin_site)
        # The funnel's link in this app's section of the site's index. Only when the site
        # has no index template of its own; ours extends "admin/index.html", so a site's
        # override of that template still applies.
        if admin_site.index_template is None:
            admin_site.index_template = "admin/unipost_connect/index.html"

    def get_urls(self) -> list[URLPattern]:
        funnel_url = path(
            "funnel/",
            self.admin_site.admin_view(self.funnel_view),
            name=f"{self.opts.app_label}_{self.opts.model_name}_funnel",
        )
        # Before the model's own patterns: "<path:object_id>/" would take "funnel/".
        return [funnel_url, *super().get_urls()]

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest) -> bool:
        if lookup.split(LOOKUP_SEP, 1)[0] in self.secret_fields:
            return False
        return super().lookup_allowed(lookup, value, request)

    @admin.display(description=_("session"), ordering="id")
    def session_id(self, obj: ConnectSession) -> str:
        return short_id(obj.pk)

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, obj: ConnectSession) -> str:
        return badge(obj.status, obj.get_status_display())

    @admin.display(description=_("created"), ordering="created_at")
    def created(self, obj: ConnectSession) -> str | None:
        return short_time(obj.created_at)

    @admin.display(description=_("expires"), ordering="expires_at")
    def expires(self, obj: ConnectSession) -> str | None:
        # Half an hour after it was created: the time alone says it.
        return short_time(obj.expires_at, after=obj.created_at)

    @admin.display(description=_("error code"), ordering="error_code")
    def error(self, obj: ConnectSession) -> str | None:
        if not obj.error_code:
            return None
        return format_html('<span class="unipost-clip" title="{}">{}</span>', obj.error_code, obj.error_code)

    @admin.display(description=_("user"), ordering="user")
    def who(self, obj: ConnectSession) -> str:
        return format_html('<span class="unipost-clip" title="{}">{}</span>', obj.user, obj.user)

    @admin.display(description=_("hosted url"))
    def hosted_url(self, obj: ConnectSession) -> str:
        """For support, only on this page and only while the session is pending.

        The ``state`` parameter is the user's bearer secret for the hosted page, so it
        is masked: staff see which page the user was sent to, never a usable link.
        """
        if obj.is_pending and obj.url:
            return redact_state(obj.url)
        return "—"

    @admin.action(description=_("Refresh from UniPost"), permissions=["change"])
    def refresh_from_unipost(self, request: HttpRequest, queryset: QuerySet[ConnectSession]) -> None:
        report = ActionReport()
        for session in queryset.order_by("created_at", "pk"):
            report.checked += 1
            before = session.status
            try:
                session = services.reconcile_session(session)
            except UniPostError as exc:
                report.failed(
                    exc,
                    _("Session %(id)s was not refreshed: %(error)s.")
                    % {"id": session.pk, "error": _error_text(exc)},
                )
                continue
            # Past its deadline with nothing from UniPost (never started there): expired.
            services.expire_if_overdue(session)
            report.done += session.status != before
        if report.failures:
            summary = ngettext(
                "Checked %(checked)d session: %(done)d changed, %(failed)d failed (%(reasons)s).",
                "Checked %(checked)d sessions: %(done)d changed, %(failed)d failed (%(reasons)s).",
                report.checked,
            )
        else:
            summary = ngettext(
                "Checked %(checked)d session: %(done)d changed, none failed.",
                "Checked %(checked)d sessions: %(done)d changed, none failed.",
                report.checked,
            )
        report.tell(self, request, summary)

    def funnel_view(self, request: HttpRequest) -> HttpResponse:
        """Per platform, how the sessions of the last 7 and 30 days went; staff who may
        view sessions only. Two aggregate queries, however many sessions there are."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        periods = funnel.funnels(platforms=app_settings.PLATFORMS)
        context = {
            **self.admin_site.each_context(request),
            "title": _("Connect funnel"),
            "subtitle": None,
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "periods": [
                {
                    "funnel": period,
                    "chart": funnel.chart(period),
                    "summary": funnel.summary_phrase(period.total),
                }
                for period in periods
            ],
            "outcomes": funnel.OUTCOME_LABELS,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/unipost_connect/funnel.html", context)


@admin.register(ConnectedAccount)
class ConnectedAccountAdmin(SyncedAdmin):
    list_display = (
        "account_id",
        "account_name",
        "owner",
        "user",
        "platform",
        "profile_id",
        "status_badge",
        "connected",
    )
    list_filter = ("status", "platform", "profile_id", "connected_at")
    search_fields = (
        "external_user_id",
        "managed_account_id",
        "account_name",
    )
    list_select_related = ("user",)
    actions = ("disconnect",)
    readonly_fields = (
        "user",
        "managed_account_id",
        "platform",
        "account_name",
        "external_user_id",
        "profile_id",
        "status",
        "connected_at",
        "disconnected_at",
        "created_at",
        "updated_at",
    )
    fields = readonly_fields

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, obj: ConnectedAccount) -> str:
        return badge(obj.status, obj.get_status_display())

    @admin.display(description=_("managed account id"), ordering="managed_account_id")
    def account_id(self, obj: ConnectedAccount) -> str:
        return short_id(obj.managed_account_id)

    @admin.display(description=_("connected at"), ordering="connected_at")
    def connected(self, obj: ConnectedAccount) -> str | None:
        return short_time(obj.connected_at)

    @admin.display(description=_("owner"), ordering="external_user_id")
    def owner(self, obj: ConnectedAccount) -> str:
        """The external user id UniPost holds it for: shared by everyone mapped to it."""
        return obj.external_user_id or "—"

    @admin.action(description=_("Disconnect (in UniPost too)"), permissions=["change"])
    def disconnect(self, request: HttpRequest, queryset: QuerySet[ConnectedAccount]) -> None:
        """DELETE each account at UniPost; mark only those UniPost confirmed."""
        report = ActionReport()
        for account in queryset.order_by("pk"):
            report.checked += 1
            if account.status == ConnectedAccount.Status.DISCONNECTED:
                report.skipped += 1
                continue
            try:
                # False: a webhook or another click marked it meanwhile.
                if services.disconnect_account(account):
                    report.done += 1
                else:
                    report.skipped += 1
            except UniPostError as exc:
                report.failed(
                    exc,
                    _("%(account)s was not disconnected: %(error)s.")
                    % {"account": account, "error": _error_text(exc)},
                )
        if report.failures:
            summary = ngettext(
                "Checked %(checked)d account: %(done)d disconnected, %(failed)d failed (%(reasons)s).",
                "Checked %(checked)d accounts: %(done)d disconnected, %(failed)d failed (%(reasons)s).",
                report.checked,
            )
        else:
            summary = ngettext(
                "Checked %(checked)d account: %(done)d disconnected, none failed.",
                "Checked %(checked)d accounts: %(done)d disconnected, none failed.",
                report.checked,
            )
        if report.skipped:
            summary += " " + ngettext(
                "%(skipped)d was disconnected already.",
                "%(skipped)d were disconnected already.",
                report.skipped,
            )
        report.tell(self, request, summary)


@admin.register(WebhookEvent)
class WebhookEventAdmin(CheckedSelectionMixin, _WebhookEventAdminBase):
    list_display = ("event_key", "event_type", "result_badge", "received_at", "processed_at")
    actions = ("process_again",)
    list_filter = ("event_type", "result", "received_at")
    search_fields = ("event_key", "delivery_id")
    readonly_fields = (
        "event_key",
        "event_type",
        "delivery_id",
        "payload",
        "result",
        "detail",
        "received_at",
        "processed_at",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_process_permission(self, request: HttpRequest) -> bool:
        # The rows stay read-only; processing them again is what the change permission allows.
        return request.user.has_perm("unipost_connect.change_webhookevent")

    @admin.display(description=_("result"), ordering="result")
    def result_badge(self, obj: WebhookEvent) -> str:
        return badge(obj.result, obj.get_result_display())

    @admin.action(description=_("Process again (received or failed events)"), permissions=["process"])
    def process_again(self, request: HttpRequest, queryset: QuerySet[WebhookEvent]) -> None:
        due = list(
            queryset.filter(
                result__in=(WebhookEvent.Result.RECEIVED, WebhookEvent.Result.FAILED)
            ).values_list("pk", flat=True)
        )
        for event_id in due:
            tasks.enqueue(tasks.process_webhook_event, event_id)
        skipped = queryset.count() - len(due)
        self.message_user(
            request,
            ngettext(
                "%(count)d event handed to processing.",
                "%(count)d events handed to processing.",
                len(due),
            )
            % {"count": len(due)}
            + (
                " "
                + ngettext(
                    "%(count)d was already processed and is left as it is.",
                    "%(count)d were already processed and are left as they are.",
                    skipped,
                )
                % {"count": skipped}
                if skipped
                else ""
            ),
            messages.SUCCESS,
        )
