"""Prometheus metrics of one gateway: counters read from its Stats, histograms it observes. Does I/O
(the HTTP endpoint).

Each gateway has its own registry, so several can run in one process (tests, benchmarks).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from gateway.ingest import Stats


class _StatsCollector(Collector):
    def __init__(self, stats: Stats, backlog: Callable[[], int], spool_bytes: Callable[[], int]) -> None:
        self.stats = stats
        self.backlog = backlog
        self.spool_bytes = spool_bytes

    def collect(self) -> Iterator[Metric]:
        s = self.stats
        for name, doc, value in (
            ("gridtwin_messages_received", "MQTT messages received", s.received),
            ("gridtwin_messages_accepted", "messages that passed validation", s.accepted),
            ("gridtwin_messages_duplicate", "redeliveries/retries dropped (device, seq, ts)", s.duplicates),
            ("gridtwin_readings_written", "telemetry rows written", s.readings_written),
            ("gridtwin_events_written", "device events written", s.events_written),
            ("gridtwin_batches", "batches written", s.batches),
            ("gridtwin_db_errors", "failed database writes", s.db_errors),
            ("gridtwin_batches_spooled", "batches spooled to disk while the database was down", s.spooled),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        rejected = CounterMetricFamily("gridtwin_messages_rejected", "rejected messages by reason",
                                       labels=["reason"])
        for reason, n in sorted(s.rejected.items()):
            rejected.add_metric([reason], n)
        yield rejected
        yield GaugeMetricFamily("gridtwin_backlog", "messages queued for the writer", value=self.backlog())
        yield GaugeMetricFamily("gridtwin_spool_bytes", "bytes waiting in the on-disk spool",
                                value=self.spool_bytes())


class GatewayMetrics:
    def __init__(self, stats: Stats, *, backlog: Callable[[], int], spool_bytes: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_StatsCollector(stats, backlog, spool_bytes))
        self.batch_size = Histogram("gridtwin_batch_size", "messages per written batch", registry=self.registry,
                                    buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10000))
        self.write_seconds = Histogram("gridtwin_db_write_seconds", "database write latency per batch",
                                       registry=self.registry,
                                       buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
        self._server: WSGIServer | None = None
        self.port: int | None = None

    def serve(self, port: int, addr: str = "0.0.0.0") -> int:
        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        self._server = server
        self.port = int(server.server_port)
        return self.port

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def text(self) -> str:
        from prometheus_client import generate_latest

        out: Any = generate_latest(self.registry)
        return bytes(out).decode()
