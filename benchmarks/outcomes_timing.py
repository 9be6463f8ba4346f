"""Outcomes and hotspots read times on a seeded schema (BENCHMARKS.md, "Outcomes, hotspots and the monthly
report"). Seed first with ``python -m tests.integration.outcomes_seed URL SCHEMA DAYS``, then
``PYTHONPATH=. .venv/bin/python -m benchmarks.outcomes_timing URL SCHEMA``."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Literal

from gateway.api.pool import StoragePool
from gateway.outcomes.store import outcomes
from gateway.web.hotspots_data import hotspots
from tests.support.api_env import sample_community


def median_s(fn: Callable[[], object], n: int = 5) -> float:
    took = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        took.append(time.perf_counter() - t0)
    return statistics.median(took)


def main(argv: list[str]) -> int:
    url = argv[0] if argv else "postgresql://postgres@127.0.0.1:5432/test"
    schema = argv[1] if len(argv) > 1 else "bench_outcomes"
    c = sample_community()
    pool = StoragePool(url, schema=schema)
    end = datetime.now(UTC)
    try:
        runs: tuple[tuple[int, Literal["day", "week", "month"]], ...] = (
            (84, "week"), (84, "day"), (365, "week"), (365, "month"))
        for days, bucket in runs:
            start = end - timedelta(days=days)
            took = median_s(partial(outcomes, pool, c, start, end, bucket=bucket))
            print(f"outcomes {days} d by {bucket}: {took * 1000:.0f} ms")
        for days in (30, 90):
            start = end - timedelta(days=days)
            took = median_s(partial(hotspots, pool, c, start, end))
            print(f"hotspots {days} d: {took * 1000:.0f} ms")
    finally:
        pool.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
