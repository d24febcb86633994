"""The nine platforms UniPost Connect serves: their names, labels, and how a name given
by a user, a setting or UniPost is read."""

from __future__ import annotations

ALL_PLATFORMS: tuple[str, ...] = (
    "twitter",
    "linkedin",
    "bluesky",
    "youtube",
    "tiktok",
    "instagram",
    "threads",
    "facebook",
    "pinterest",
)

PLATFORM_LABELS: dict[str, str] = {
    "twitter": "X (Twitter)",
    "linkedin": "LinkedIn",
    "bluesky": "Bluesky",
    "youtube": "YouTube",
    "tiktok": "TikTok",
    "instagram": "Instagram",
    "threads": "Threads",
    "facebook": "Facebook",
    "pinterest": "Pinterest",
}

# For the platform cards: a brand colour white text reads on at WCAG AA (4.5:1; some
# brands' own are darkened to get there) and the letters of a drawn monogram.
PLATFORM_STYLES: dict[str, tuple[str, str]] = {
    "twitter": ("#000000", "X"),
    "linkedin": ("#0a66c2", "in"),
    "bluesky": ("#0a62c9", "bs"),
    "youtube": ("#c4000f", "YT"),
    "tiktok": ("#111111", "TT"),
    "instagram": ("#b9206b", "IG"),
    "threads": ("#1c1c1c", "@"),
    "facebook": ("#0860e0", "f"),
    "pinterest": ("#bd081c", "P"),
}

# Bluesky uses app passwords: no OAuth app, so no platform credentials are involved, and
# each connect may make a new account.
OAUTH_FREE_PLATFORMS = frozenset({"bluesky"})

CHOICES: list[tuple[str, str]] = [(p, PLATFORM_LABELS[p]) for p in ALL_PLATFORMS]


def normalize(value: object) -> str:
    """A platform name as UniPost reads it: trimmed and lowercased ("" for a non-string)."""
    return value.strip().lower() if isinstance(value, str) else ""


def label(platform: str) -> str:
    """The name to show for ``platform``; an unknown one is shown as it is."""
    return PLATFORM_LABELS.get(platform, platform)
