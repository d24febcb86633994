"""The admin's Connect funnel: its figures (unipost_connect.funnel), its page, its links."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from django.contrib.admin import AdminSite
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone, translation

from unipost_connect import funnel
from unipost_connect.admin import ConnectSessionAdmin
from unipost_connect.models import ConnectSession

pytestmark = pytest.mark.django_db

FUNNEL_URL = "/admin/unipost_connect/connectsession/funnel/"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
_ids = count()


def add_sessions(
    user: Any, platform: str, status: str, days_ago: float, n: int = 1, *, now: datetime = NOW
) -> None:
    """``n`` sessions of ``user`` created ``days_ago`` days before ``now``, in one INSERT."""
    ConnectSession.objects.bulk_create(
        ConnectSession(
            user=user,
            platform=platform,
            status=status,
            external_user_id=f"ext-{user.pk}",
            unipost_session_id=f"cs_{next(_ids)}",
            created_at=now - timedelta(days=days_ago),
        )
        for _ in range(n)
    )


def known_mix(user: Any, now: datetime = NOW) -> None:
    """LinkedIn and Bluesky over both periods, and sessions too old for either."""
    for platform, status, days_ago, n in (
        # the last 7 days
        ("linkedin", "completed", 1, 3),
        ("linkedin", "cancelled", 2, 1),
        ("linkedin", "pending", 0.01, 1),
        ("bluesky", "failed", 6.9, 1),
        # 7 to 30 days ago
        ("linkedin", "completed", 8, 2),
        ("linkedin", "expired", 15, 1),
        ("linkedin", "failed", 29.9, 1),
        ("bluesky", "cancelled", 10, 1),
        # older than 30 days: in neither period
        ("linkedin", "completed", 30.1, 5),
        ("youtube", "completed", 45, 4),
    ):
        add_sessions(user, platform, status, days_ago, n, now=now)


def figures(period: funnel.PeriodFunnel) -> dict[str, tuple[int, ...]]:
    """platform -> (started, completed, cancelled, expired, failed, pending, percent)."""
    return {
        f.platform: (f.started, *(c for _, c in f.outcome_counts), f.completion_percent)
        for f in (*period.platforms, period.total)
    }


# -- the figures -------------------------------------------------------------------------

EXPECTED_7 = {
    "linkedin": (5, 3, 1, 0, 0, 1, 60),
    "bluesky": (1, 0, 0, 0, 1, 0, 0),
    "twitter": (0, 0, 0, 0, 0, 0, None),
    "": (6, 3, 1, 0, 1, 1, 50),
}
EXPECTED_30 = {
    "linkedin": (9, 5, 1, 1, 1, 1, 56),  # 5 of 9 is 55.6%
    "bluesky": (2, 0, 1, 0, 1, 0, 0),
    "twitter": (0, 0, 0, 0, 0, 0, None),
    "": (11, 5, 2, 1, 2, 1, 45),  # 5 of 11 is 45.5%
}


def test_the_figures_of_a_known_mix_over_both_periods(user):
    known_mix(user)
    week, month = funnel.funnels(now=NOW, platforms=("twitter", "linkedin", "bluesky"))
    assert (week.days, month.days) == (7, 30)
    assert (week.since, week.until) == (NOW - timedelta(days=7), NOW)
    assert figures(week) == EXPECTED_7
    assert figures(month) == EXPECTED_30
    # The allowed platforms in the site's order, zeros and all; YouTube's sessions are
    # all older than 30 days.
    assert [f.platform for f in month.platforms] == ["twitter", "linkedin", "bluesky"]
    assert month.total.label == "All platforms"


def test_a_platform_with_sessions_but_no_longer_allowed_follows_the_allowed_ones(user):
    add_sessions(user, "pinterest", "completed", 1)
    add_sessions(user, "twitter", "completed", 1)
    add_sessions(user, "legacy", "failed", 1)  # a name this version does not know
    period = funnel.period_funnel(7, now=NOW, platforms=("linkedin",))
    assert [(f.platform, f.label, f.started) for f in period.platforms] == [
        ("linkedin", "LinkedIn", 0),
        ("twitter", "X (Twitter)", 1),
        ("pinterest", "Pinterest", 1),
        ("legacy", "legacy", 1),
    ]


def test_the_period_includes_its_first_instant_and_nothing_after_now(user):
    add_sessions(user, "linkedin", "completed", 7)  # exactly 7 days before: in
    add_sessions(user, "linkedin", "completed", 7 + 1 / 86400)  # one second more: out
    add_sessions(user, "linkedin", "completed", -1 / 86400)  # a second after now: out
    assert funnel.period_funnel(7, now=NOW).total.started == 1


@pytest.mark.parametrize(
    ("completed", "started", "percent"),
    [(2, 3, 67), (1, 3, 33), (1, 8, 13), (3, 8, 38), (0, 4, 0), (4, 4, 100), (0, 0, None)],
)
def test_the_completion_rate_in_whole_percent_halves_up(completed, started, percent):
    figures = funnel.PlatformFigures("x", "X", started=started, completed=completed)
    assert figures.completion_percent == percent
    assert figures.completion_rate == (completed / started if started else None)


def test_no_sessions_at_all():
    period = funnel.period_funnel(30, now=NOW)
    assert period.platforms == ()
    assert (period.total.started, period.total.completion_percent) == (0, None)
    assert funnel.chart(period).rows == ()


def test_one_query_per_period_whatever_the_number_of_sessions(user, django_assert_num_queries):
    known_mix(user)
    with django_assert_num_queries(2) as captured:
        funnel.funnels(now=NOW)
    for query in captured.captured_queries:
        assert "GROUP BY" in query["sql"] and "COUNT(" in query["sql"]


# -- the chart's geometry --------------------------------------------------------------------


def test_the_chart_draws_the_platforms_with_sessions_longest_for_the_most(user):
    known_mix(user)
    month = funnel.period_funnel(30, now=NOW, platforms=("twitter", "linkedin", "bluesky"))
    chart = funnel.chart(month)
    assert [row.figures.platform for row in chart.rows] == ["linkedin", "bluesky"]  # no Twitter
    linkedin, bluesky = chart.rows
    assert [(s.outcome, s.count) for s in linkedin.segments] == [
        ("completed", 5),
        ("cancelled", 1),
        ("expired", 1),
        ("failed", 1),
        ("pending", 1),
    ]
    # The segments meet exactly, from the bar's left; the longest bar is the full width.
    for row in chart.rows:
        x = float(funnel.BAR_LEFT)
        for segment in row.segments:
            assert segment.x == pytest.approx(x) and segment.width > 0
            x = segment.x + segment.width
        row_end = x
        expected = funnel.BAR_WIDTH * row.figures.started / 9
        assert row_end - funnel.BAR_LEFT == pytest.approx(expected, abs=0.11)
    assert sum(s.width for s in linkedin.segments) == pytest.approx(funnel.BAR_WIDTH)
    # Words, not colour alone.
    assert linkedin.summary == "9 started, 56% completed"
    assert linkedin.breakdown == "5 completed · 1 cancelled · 1 expired · 1 failed · 1 still pending"
    assert bluesky.segments[0].title == "Bluesky: 1 cancelled"
    # Rows stack without overlapping, and the drawing is tall enough for them.
    assert bluesky.y - linkedin.y == funnel.ROW_HEIGHT
    assert linkedin.breakdown_y < bluesky.bar_y < bluesky.breakdown_y < chart.height


def test_a_platform_with_no_session_says_so_in_words():
    assert funnel.summary_phrase(funnel.PlatformFigures("x", "X")) == "0 started"


# -- the page ----------------------------------------------------------------------------------


class FunnelPage(HTMLParser):
    """What the page shows, per section (``last-7-days``): the table's cells and the
    chart's segments, each by platform ("" for the totals)."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tables: dict[str, dict[str, dict[str, str]]] = defaultdict(dict)
        self.bars: dict[str, dict[str, dict[str, int]]] = defaultdict(dict)
        self.svg_labels: dict[str, str] = {}
        self.svg_text: dict[str, list[str]] = defaultdict(list)
        self._section = self._row = self._cell = self._group = None
        self._in_svg = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section":
            self._section = a.get("id")
        elif tag == "svg" and a.get("class") == "unipost-funnel-chart":
            self._in_svg = True
            self.svg_labels[str(self._section)] = str(a.get("aria-labelledby"))
        elif tag == "tr" and "data-platform" in a:
            self._row = a["data-platform"]
            self.tables[str(self._section)][str(self._row)] = {}
        elif tag == "td" and self._row is not None:
            self._cell = a.get("data-outcome")
        elif tag == "g" and "data-platform" in a:
            self._group = a["data-platform"]
            self.bars[str(self._section)][str(self._group)] = {}
        elif tag == "rect" and self._group is not None:
            outcome = re.search(r"unipost-outcome-(\w+)", a.get("class") or "")
            assert outcome and float(str(a["width"])) > 0 and "," not in str(a["x"]) + str(a["width"])
            self.bars[str(self._section)][str(self._group)][outcome[1]] = int(str(a["data-count"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr":
            self._row = None
        elif tag == "td":
            self._cell = None
        elif tag == "g":
            self._group = None
        elif tag == "svg":
            self._in_svg = False
        elif tag == "section":
            self._section = None

    def handle_data(self, data: str) -> None:
        if self._row is not None and self._cell is not None and data.strip():
            self.tables[str(self._section)][str(self._row)][self._cell] = data.strip()
        if self._in_svg and data.strip():
            self.svg_text[str(self._section)].append(data.strip())


def as_table(expected: dict[str, tuple[Any, ...]]) -> dict[str, dict[str, str]]:
    names = ("started", *funnel.OUTCOMES, "rate")
    return {
        platform: {
            name: ("—" if value is None else f"{value}%") if name == "rate" else str(value)
            for name, value in zip(names, values, strict=True)
        }
        for platform, values in expected.items()
    }


@override_settings(
    UNIPOST_CONNECT={"API_KEY": "up_test_key", "PLATFORMS": ["twitter", "linkedin", "bluesky"]}
)
def test_the_page_shows_the_same_figures_in_its_chart_and_its_table(admin_client, user):
    known_mix(user, now=timezone.now())
    answer = admin_client.get(FUNNEL_URL)
    assert answer.status_code == 200
    assert answer.templates[0].name == "admin/unipost_connect/funnel.html"
    html = answer.content.decode()
    page = FunnelPage(html)
    for section, expected in (("last-7-days", EXPECTED_7), ("last-30-days", EXPECTED_30)):
        table = page.tables[section]
        assert table == as_table(expected)
        # The chart: a bar per platform that started a session, a segment per outcome it
        # has, each as many as the table says.
        bars = page.bars[section]
        assert set(bars) == {p for p, values in expected.items() if p and values[0]}
        for platform, segments in bars.items():
            assert segments == {
                o: int(n) for o, n in table[platform].items() if o in funnel.OUTCOMES and n != "0"
            }
        assert (
            page.svg_labels[section]
            == f"funnel-{section.split('-')[1]}-title funnel-{section.split('-')[1]}-desc"
        )
    assert "9 started, 56% completed" in page.svg_text["last-30-days"]
    assert "5 started, 60% completed" in page.svg_text["last-7-days"]
    assert "All platforms" in html and "6 started, 50% completed" in html
    assert 'role="img"' in html and "<desc " in html
    assert (
        html.count('<svg xmlns="http://www.w3.org/2000/svg" class="unipost-funnel-chart"') == 2
        and html.count('class="unipost-funnel-table"') == 2
    )
    assert "Last 7 days" in html and "Last 30 days" in html
    assert "unipost_connect/admin.css" in html
    # The admin's own frame: breadcrumbs back to the app and the sessions.
    assert reverse("admin:app_list", args=["unipost_connect"]) in html
    assert reverse("admin:unipost_connect_connectsession_changelist") in html


def test_a_period_without_sessions_says_so_and_draws_no_chart(admin_client, user):
    add_sessions(user, "linkedin", "completed", 20, now=timezone.now())
    html = admin_client.get(FUNNEL_URL).content.decode()
    week, month = html.split('id="last-30-days"')
    assert "No connect session was started in this period." in week and "unipost-funnel-chart" not in week
    assert "unipost-funnel-chart" in month and "No connect session" not in month


@override_settings(LANGUAGE_CODE="de")
def test_the_chart_coordinates_are_not_localized(admin_client, user):
    # German writes 12,5 for 12.5: in an SVG attribute that would break the drawing.
    add_sessions(user, "linkedin", "completed", 1, 2, now=timezone.now())
    add_sessions(user, "linkedin", "failed", 1, 1, now=timezone.now())
    with translation.override("de"):
        html = admin_client.get(FUNNEL_URL).content.decode()
    widths = re.findall(r'<rect [^>]*width="([^"]+)"', html)
    assert widths and all(re.fullmatch(r"\d+(\.\d+)?", w) for w in widths)
    assert any("." in w for w in widths)  # 340 split in thirds: not whole numbers
    FunnelPage(html)  # and no comma in any x or width


def test_the_query_count_is_the_same_for_10_and_1000_sessions(admin_client, user):
    statuses = ("completed", "cancelled", "expired", "failed", "pending")
    platforms = ("linkedin", "bluesky", "twitter", "youtube")
    now = timezone.now()

    def add(start: int, n: int) -> None:
        ConnectSession.objects.bulk_create(
            ConnectSession(
                user=user,
                platform=platforms[i % len(platforms)],
                status=statuses[i % len(statuses)],
                external_user_id="ext",
                unipost_session_id=f"cs_{i}",
                created_at=now - timedelta(hours=i % (40 * 24), minutes=30),  # over 40 days
            )
            for i in range(start, start + n)
        )

    def queries() -> tuple[int, str]:
        with CaptureQueriesContext(connection) as captured:
            answer = admin_client.get(FUNNEL_URL)
        assert answer.status_code == 200
        return len(captured), answer.content.decode()

    add(0, 10)
    small, _ = queries()
    add(10, 990)
    assert ConnectSession.objects.count() == 1000
    large, large_page = queries()
    assert large == small
    assert FunnelPage(large_page).tables["last-30-days"][""]["started"] == str(
        ConnectSession.objects.filter(created_at__gte=now - timedelta(days=30)).count()
    )
    print(f"funnel page queries: {small} for 10 sessions, {large} for 1,000")


# -- who may see it ------------------------------------------------------------------------------


def staff(django_user_model: Any, *codenames: str) -> Client:
    member = django_user_model.objects.create_user("staffer", password="pw", is_staff=True)
    member.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(member)
    return client


def test_anonymous_visitors_are_sent_to_the_admin_login(client):
    answer = client.get(FUNNEL_URL)
    assert answer.status_code == 302
    assert answer["Location"] == reverse("admin:login") + "?next=" + FUNNEL_URL


def test_a_logged_in_user_who_is_not_staff_is_sent_to_the_admin_login(user_client):
    answer = user_client.get(FUNNEL_URL)
    assert answer.status_code == 302 and answer["Location"].startswith(reverse("admin:login"))


def test_staff_without_the_sessions_view_permission_are_refused(django_user_model):
    client = staff(django_user_model, "view_connectedaccount")
    assert client.get(FUNNEL_URL).status_code == 403
    # Nor is it offered to them.
    for url in (reverse("admin:index"), reverse("admin:app_list", args=["unipost_connect"])):
        page = client.get(url)
        assert page.status_code == 200
        assert FUNNEL_URL not in page.content.decode()
        assert "/admin/unipost_connect/connectedaccount/" in page.content.decode()


@pytest.mark.parametrize("codename", ["view_connectsession", "change_connectsession"])
def test_staff_who_may_view_sessions_see_it(django_user_model, codename):
    client = staff(django_user_model, codename)
    assert client.get(FUNNEL_URL).status_code == 200
    assert FUNNEL_URL in client.get(reverse("admin:index")).content.decode()


# -- the links ---------------------------------------------------------------------------------


def app_section(html: str) -> str:
    """The unipost_connect section of an admin index page."""
    match = re.search(r'<div class="app-unipost_connect module[^"]*">(.*?)</table>\s*</div>', html, re.S)
    assert match, "no unipost_connect section"
    return match[1]


@pytest.mark.parametrize("url", ["/admin/", "/admin/unipost_connect/"])
def test_the_funnel_is_one_click_from_the_admin_index_and_the_app_index(admin_client, url):
    answer = admin_client.get(url)
    assert answer.status_code == 200
    section = app_section(answer.content.decode())
    assert f'<a href="{FUNNEL_URL}">Connect funnel</a>' in section
    # Right under the sessions, with the models as Django lists them.
    rows = re.findall(r'<tr class="model-(\w+)', section)
    assert rows == ["connectsession", "connectfunnel", "connectedaccount", "webhookevent"]
    assert section.count('class="viewlink"') + section.count('class="changelink"') == 4


def test_the_admin_index_still_lists_every_other_app(admin_client):
    html = admin_client.get("/admin/").content.decode()
    assert '<div class="app-auth module' in html
    assert "/admin/auth/user/" in html and "/admin/auth/group/" in html
    assert html.index("app-auth") < html.index("app-unipost_connect")  # by name, as Django sorts


def test_the_sessions_list_links_to_the_funnel(admin_client):
    html = admin_client.get(reverse("admin:unipost_connect_connectsession_changelist")).content.decode()
    tools = html.split('class="object-tools"', 1)[1].split("</ul>", 1)[0]
    assert f'href="{FUNNEL_URL}"' in tools and "Connect funnel" in tools


def test_a_staff_member_who_sees_nothing_is_told_so(django_user_model):
    html = staff(django_user_model).get("/admin/").content.decode()
    assert "You don\u2019t have permission to view or edit anything." in html


# -- colours -----------------------------------------------------------------------------------

CSS = Path(__file__).resolve().parents[1] / "unipost_connect" / "static" / "unipost_connect" / "admin.css"


def _luminance(colour: str) -> float:
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    light, dark = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_the_outcome_colours_meet_wcag_aa_in_the_light_and_the_dark_theme():
    css = CSS.read_text()
    blocks = {
        "light": css.split('html[data-theme="light"] {', 1)[1].split("}", 1)[0],
        "dark (system)": css.split("@media (prefers-color-scheme: dark) {", 1)[1].split("}", 1)[0],
        "dark (toggle)": css.split('html[data-theme="dark"] {', 1)[1].split("}", 1)[0],
    }
    # The admin's page backgrounds (and its darkened one, behind table rows).
    backgrounds = {"light": ("#ffffff", "#f8f8f8"), "dark (system)": ("#121212", "#212121")}
    backgrounds["dark (toggle)"] = backgrounds["dark (system)"]
    for theme, block in blocks.items():
        colours = dict(re.findall(r"--unipost-(\w+):\s*(#[0-9a-f]{6});", block))
        assert set(colours) == set(funnel.OUTCOMES), theme
        for outcome, colour in colours.items():
            for background in backgrounds[theme]:
                # 3:1 is AA for graphics; these reach the 4.5:1 asked of text.
                assert contrast(colour, background) >= 4.5, (theme, outcome, colour, background)
    assert blocks["dark (system)"].strip().startswith(":root")
    assert re.sub(r"\s", "", blocks["dark (system)"].split("{", 1)[1]) == re.sub(
        r"\s", "", blocks["dark (toggle)"]
    )


def test_a_site_with_an_index_template_of_its_own_keeps_it():
    own = AdminSite(name="own")
    own.index_template = "mysite/admin_index.html"
    ConnectSessionAdmin(ConnectSession, own)
    assert own.index_template == "mysite/admin_index.html"
    bare = AdminSite(name="bare")
    ConnectSessionAdmin(ConnectSession, bare)
    assert bare.index_template == "admin/unipost_connect/index.html"
