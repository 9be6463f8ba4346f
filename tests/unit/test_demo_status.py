"""What ``gridtwin demo`` prints and the address its links use (gateway/ops/demo.py). No services."""

from __future__ import annotations

from datetime import datetime

from gateway import settings as settings_mod
from gateway.ops import demo

AT = datetime(2026, 12, 2, 12, 3, 5)


def _snap(readings: int = 0, rejected: int = 0, db_errors: int = 0, spooled: int = 0) -> dict[str, object]:
    return {"readings_written": readings, "rejected": {"bad_json": rejected} if rejected else {},
            "db_errors": db_errors, "spooled": spooled}


def test_the_rating_link_base_is_the_served_address_unless_set() -> None:
    s = settings_mod.load(env={})
    served = demo.served_settings(s, demo.served_url(8123))
    assert served.api.public_url == "http://127.0.0.1:8123"
    assert served.demo == s.demo and served.db == s.db
    mine = settings_mod.load(env={"GRIDTWIN_API_PUBLIC_URL": "https://twin.example.org"})
    assert demo.served_settings(mine, demo.served_url(8123)).api.public_url == "https://twin.example.org"


def test_a_status_line_only_when_something_a_person_cares_about_changed() -> None:
    st = demo.DemoStatus()
    first = st.update(demo.counts(_snap(100), 0, 0, 0), AT)
    assert first == "12:03:05  0 active alarms, 0 open tickets; 100 readings stored"
    assert st.update(demo.counts(_snap(5_000), 0, 0, 0), AT) is None  # only more readings: nothing to say
    line = st.update(demo.counts(_snap(6_000), 2, 1, 1), AT)
    assert line == "12:03:05  2 active alarms (1 critical), 1 open ticket; 6,000 readings stored"
    assert st.update(demo.counts(_snap(7_000), 2, 1, 1), AT) is None
    line = st.update(demo.counts(_snap(7_000, rejected=3, db_errors=1, spooled=2), 2, 1, 1), AT)
    assert line is not None and "3 messages rejected" in line and "database trouble" in line
    line = st.update(demo.counts(_snap(7_000), None, 0, None), AT)
    assert line is not None and "cannot be read" in line
