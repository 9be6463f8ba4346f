"""Dashboard strings for the devices area: key -> (Simplified Chinese, English). Merged by :mod:`viz.i18n`."""

from __future__ import annotations

STRINGS: dict[str, tuple[str, str]] = {
}
