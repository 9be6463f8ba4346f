"""URL paths of the dashboard: which page a path names, which redirect targets are safe, which paths are bad.

Pure functions of their input; the router (:mod:`viz.routing`), the page guard (:mod:`viz.security`)
and the pages' callbacks use them.
"""

from __future__ import annotations

from urllib.parse import urlsplit


def parse_path(path: str | None) -> tuple[str, str | None]:
    """(page kind, argument) of a URL path; unknown paths are kind ``notfound`` with the path."""
    p = (path or "/").rstrip("/") or "/"
    fixed = {"/": "control", "/tickets": "tickets", "/kpi": "kpi", "/hotspots": "hotspots", "/care": "care",
             "/outcomes": "outcomes",
             "/devices": "devices", "/worker": "worker", "/login": "login", "/history": "history", "/audit": "audit",
             "/report": "report", "/residents": "residents", "/patrols": "patrols", "/patrol": "patrol",
             "/assistant": "assistant"}
    if p in fixed:
        return fixed[p], None
    for prefix, kind in (("/building/", "control"), ("/device/", "device"), ("/worker/ticket/", "wticket"),
                         ("/incident/", "incident"), ("/residents/", "resident"), ("/patrol/", "patrol")):
        if p.startswith(prefix) and len(p) > len(prefix):
            return kind, p[len(prefix):]
    return "notfound", p


def safe_next(target: str | None) -> str:
    """Only local absolute paths may be redirect targets (no open redirect); anything else is ``/``.

    A target must start with exactly one ``/`` and hold no backslash and no control or other
    non-printable character: browsers drop tabs and newlines from URLs (``/%09/evil.example`` becomes
    ``//evil.example``, another site) and read a backslash as ``/``; a newline cannot go into a header.
    """
    if not target or len(target) > 2048 or not target.startswith("/") or target.startswith("//"):
        return "/"
    if "\\" in target or not target.isprintable():
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/") or parts.path.startswith("//"):
        return "/"
    return target


def bad_path(path: str) -> bool:
    """A request path no page or resource of ours has: ``.``/``..`` segments, backslashes, control characters."""
    if "\\" in path or not path.isprintable():
        return True
    return any(seg in (".", "..") for seg in path.split("/"))

