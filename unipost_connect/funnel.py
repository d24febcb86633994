"""The Connect funnel: per platform, how many sessions were started and how they ended.

:func:`period_funnel` makes one aggregate query per period (``COUNT(*) FILTER (WHERE
status = …)`` grouped by platform), so its cost does not grow with the number of
sessions; :func:`chart` lays the figures out as horizontal stacked bars for the admin's
SVG. Both are pure: no request, no HTTP. The admin's "Connect funnel" page shows them.

A session counts in a period when it was *created* in it (the ``days`` times 24 hours
before ``now``), whatever it has become since: the figures of a period change as its
pending sessions end.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Q
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from .models import ConnectSession
from .platforms import ALL_PLATFORMS, label

PERIODS = (7, 30)

# How a started session stands, in the order of the bar's segments. "pending" is what is
# left: started and not (yet) ended.
OUTCOMES = ("completed", "cancelled", "expired", "failed", "pending")
_ENDED = OUTCOMES[:-1]
OUTCOME_LABELS: tuple[tuple[str, str | Promise], ...] = (
    ("completed", ConnectSession.Status.COMPLETED.label),
    ("cancelled", ConnectSession.Status.CANCELLED.label),
    ("expired", ConnectSession.Status.EXPIRED.label),
    ("failed", ConnectSession.Status.FAILED.label),
    ("pending", gettext_lazy("Still pending")),
)


@dataclass(frozen=True)
class PlatformFigures:
    """The sessions of one platform (or of all, ``platform == ""``) in one period."""

    platform: str
    label: str
    started: int = 0
    completed: int = 0
    cancelled: int = 0
    expired: int = 0
    failed: int = 0

    @property
    def pending(self) -> int:
        """Started and not ended yet: still on UniPost's page, or never back."""
        return self.started - sum(self.count(outcome) for outcome in _ENDED)

    @property
    def completion_rate(self) -> float | None:
        """Completed over started (pending ones count as not completed); None for none."""
        return self.completed / self.started if self.started else None

    @property
    def completion_percent(self) -> int | None:
        """The rate in whole percent, halves rounded up (2 of 3 is 67, 1 of 8 is 13)."""
        if not self.started:
            return None
        return (200 * self.completed + self.started) // (2 * self.started)

    def count(self, outcome: str) -> int:
        """The sessions with ``outcome`` (one of :data:`OUTCOMES`, "pending" too)."""
        return int(getattr(self, outcome))

    @property
    def outcome_counts(self) -> tuple[tuple[str, int], ...]:
        """``(outcome, count)`` for each of :data:`OUTCOMES`, in order."""
        return tuple((outcome, self.count(outcome)) for outcome in OUTCOMES)

    def __add__(self, other: PlatformFigures) -> PlatformFigures:
        return PlatformFigures(
            self.platform,
            self.label,
            self.started + other.started,
            *(self.count(outcome) + other.count(outcome) for outcome in _ENDED),
        )


@dataclass(frozen=True)
class PeriodFunnel:
    """Every platform's figures for sessions created from ``since`` to ``until``."""

    days: int
    since: datetime
    until: datetime
    platforms: tuple[PlatformFigures, ...]

    @property
    def total(self) -> PlatformFigures:
        total = PlatformFigures("", _("All platforms"))
        for figures in self.platforms:
            total += figures
        return total


def period_funnel(days: int, *, now: datetime | None = None, platforms: Sequence[str] = ()) -> PeriodFunnel:
    """The funnel of the last ``days`` days before ``now``: one query.

    Every platform in ``platforms`` (the site's allowed ones, say) has a row, with zeros
    when nobody tried it; a platform that has sessions but is not listed (no longer
    allowed) follows them.
    """
    until = now or timezone.now()
    since = until - timedelta(days=days)
    status = ConnectSession.Status
    rows = (
        ConnectSession.objects.filter(created_at__gte=since, created_at__lte=until)
        .order_by()  # the model's ordering has no place in a GROUP BY
        .values("platform")
        .annotate(
            started=Count("pk"),
            completed=Count("pk", filter=Q(status=status.COMPLETED)),
            cancelled=Count("pk", filter=Q(status=status.CANCELLED)),
            expired=Count("pk", filter=Q(status=status.EXPIRED)),
            failed=Count("pk", filter=Q(status=status.FAILED)),
        )
    )
    found = {
        row["platform"]: PlatformFigures(
            row["platform"],
            label(row["platform"]),
            started=row["started"],
            completed=row["completed"],
            cancelled=row["cancelled"],
            expired=row["expired"],
            failed=row["failed"],
        )
        for row in rows
    }
    return PeriodFunnel(
        days=days,
        since=since,
        until=until,
        platforms=tuple(
            found.get(platform) or PlatformFigures(platform, label(platform))
            for platform in _in_order(platforms, found)
        ),
    )


def funnels(
    periods: Iterable[int] = PERIODS, *, now: datetime | None = None, platforms: Sequence[str] = ()
) -> list[PeriodFunnel]:
    """One :class:`PeriodFunnel` per period, all ending at the same ``now``."""
    now = now or timezone.now()
    return [period_funnel(days, now=now, platforms=platforms) for days in periods]


def _in_order(listed: Sequence[str], found: Iterable[str]) -> list[str]:
    known = {platform: index for index, platform in enumerate(ALL_PLATFORMS)}
    extra = sorted(set(found) - set(listed), key=lambda p: (known.get(p, len(known)), p))
    return [*dict.fromkeys(listed), *extra]


# -- the chart -----------------------------------------------------------------------------

# SVG user units; the page scales the drawing down on a narrow screen.
CHART_WIDTH = 760
NAME_RIGHT = 136  # platform names end here (text-anchor end)
BAR_LEFT = 144
BAR_WIDTH = 340  # the longest bar: the platform with the most sessions started
LABEL_LEFT = BAR_LEFT + BAR_WIDTH + 8
ROW_HEIGHT = 50
BAR_HEIGHT = 20


@dataclass(frozen=True)
class Segment:
    """One outcome's part of a platform's bar."""

    outcome: str
    count: int
    x: float
    width: float
    title: str  # "LinkedIn: 3 cancelled", the segment's tooltip


@dataclass(frozen=True)
class ChartRow:
    figures: PlatformFigures
    y: int  # top of the row
    segments: tuple[Segment, ...]
    summary: str  # right of the bar: "20 started, 55% completed"
    breakdown: str  # under the bar, in words: "11 completed · 3 cancelled · …"

    @property
    def bar_y(self) -> int:
        return self.y + 6

    @property
    def text_y(self) -> int:
        """Baseline of the name and summary, centred on the bar."""
        return self.bar_y + BAR_HEIGHT // 2 + 5

    @property
    def breakdown_y(self) -> int:
        return self.bar_y + BAR_HEIGHT + 16


@dataclass(frozen=True)
class Chart:
    rows: tuple[ChartRow, ...]
    width: int = CHART_WIDTH
    name_right: int = NAME_RIGHT
    bar_left: int = BAR_LEFT
    bar_height: int = BAR_HEIGHT
    label_left: int = LABEL_LEFT

    @property
    def height(self) -> int:
        return len(self.rows) * ROW_HEIGHT + 4


def outcome_phrase(outcome: str, count: int) -> str:
    """``count`` sessions of ``outcome``, in words ("3 cancelled")."""
    phrases = {
        "completed": ngettext("%(count)d completed", "%(count)d completed", count),
        "cancelled": ngettext("%(count)d cancelled", "%(count)d cancelled", count),
        "expired": ngettext("%(count)d expired", "%(count)d expired", count),
        "failed": ngettext("%(count)d failed", "%(count)d failed", count),
        "pending": ngettext("%(count)d still pending", "%(count)d still pending", count),
    }
    return phrases[outcome] % {"count": count}


def summary_phrase(figures: PlatformFigures) -> str:
    """ "20 started, 55% completed" (or "0 started")."""
    started = ngettext("%(count)d started", "%(count)d started", figures.started) % {"count": figures.started}
    if figures.completion_percent is None:
        return started
    return _("%(started)s, %(percent)d%% completed") % {
        "started": started,
        "percent": figures.completion_percent,
    }


def chart(period: PeriodFunnel) -> Chart:
    """Bars for the platforms that started a session in the period, longest = most."""
    shown = [figures for figures in period.platforms if figures.started]
    scale = BAR_WIDTH / max((figures.started for figures in shown), default=1)
    rows = []
    for index, figures in enumerate(shown):
        segments, phrases, before = [], [], 0
        for outcome, count in figures.outcome_counts:
            if not count:
                continue
            # Both ends rounded from the running total: the segments meet exactly.
            left, right = round(before * scale, 1), round((before + count) * scale, 1)
            phrase = outcome_phrase(outcome, count)
            title = _("%(platform)s: %(outcome)s") % {"platform": figures.label, "outcome": phrase}
            segments.append(Segment(outcome, count, BAR_LEFT + left, round(right - left, 1), title))
            phrases.append(phrase)
            before += count
        rows.append(
            ChartRow(
                figures=figures,
                y=index * ROW_HEIGHT,
                segments=tuple(segments),
                summary=summary_phrase(figures),
                breakdown=" · ".join(phrases),
            )
        )
    return Chart(rows=tuple(rows))
