"""Prometheus metrics of one gateway: counters read from its Stats, histograms it observes. Does I/O
(the HTTP endpoint).

Each gateway has its own registry, so several can run in one process (tests, benchmarks).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import orjson
from prometheus_client import CollectorRegistry, Histogram, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from gateway.ingest.items import Stats


Health = Callable[[], dict[str, Any]]


class _StatsCollector(Collector):
    def __init__(self, stats: Stats, backlog: Callable[[], int], spool_bytes: Callable[[], int],
                 health: Health | None, sessions_lost: Callable[[], int] | None) -> None:
        self.stats = stats
        self.backlog = backlog
        self.spool_bytes = spool_bytes
        self.health = health
        self.sessions_lost = sessions_lost

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
            ("gridtwin_batches_poisoned", "batches a data error made the writer retry device by device",
             s.poisoned_batches),
            ("gridtwin_error_replies_suppressed", "error replies not sent (per-device rate limit)",
             s.error_replies_suppressed),
            ("gridtwin_dead_letters_dropped", "rejected messages counted but not stored (per-reason budget)",
             s.dead_letters_dropped),
            ("gridtwin_alarm_events", "alarm events committed or spooled", s.alarm_events),
            ("gridtwin_spool_alarm_writes_fenced",
             "spooled alarm writes replayed as alarm events only: their community's lease had moved on",
             s.spool_fenced),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        rejected = CounterMetricFamily("gridtwin_messages_rejected", "rejected messages by reason",
                                       labels=["reason"])
        for reason, n in sorted(s.rejected.items()):
            rejected.add_metric([reason], n)
        yield rejected
        if self.sessions_lost is not None:
            yield CounterMetricFamily("gridtwin_mqtt_sessions_lost",
                                      "MQTT reconnects that found no session on the broker (what it had queued "
                                      "for the gateway is lost)", value=self.sessions_lost())
        yield GaugeMetricFamily("gridtwin_backlog", "messages queued for the writer", value=self.backlog())
        yield GaugeMetricFamily("gridtwin_spool_bytes", "bytes waiting in the on-disk spool",
                                value=self.spool_bytes())
        if self.health is not None:
            h = self.health()
            alive = GaugeMetricFamily("gridtwin_thread_alive", "1 while the thread runs (0: the process exits)",
                                      labels=["thread"])
            for name, up in h["threads"].items():
                if up is not None:
                    alive.add_metric([name], 1.0 if up else 0.0)
            yield alive
            yield GaugeMetricFamily("gridtwin_oldest_unwritten_seconds",
                                    "age of the oldest received message not yet committed or spooled",
                                    value=h["oldest_unwritten_s"])
            yield GaugeMetricFamily("gridtwin_database_up", "1 when the database takes writes, 0 while spooling",
                                    value=1.0 if h["database"] == "up" else 0.0)


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # scrapes every few seconds: not worth a log line
        pass


class GatewayMetrics:
    def __init__(self, stats: Stats, *, backlog: Callable[[], int], spool_bytes: Callable[[], int],
                 health: Health | None = None, sessions_lost: Callable[[], int] | None = None) -> None:
        self.registry = CollectorRegistry()
        self.health = health
        self.registry.register(_StatsCollector(stats, backlog, spool_bytes, health, sessions_lost))
        self.batch_size = Histogram("gridtwin_batch_size", "messages per written batch", registry=self.registry,
                                    buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10000))
        self.write_seconds = Histogram("gridtwin_db_write_seconds", "database write latency per batch",
                                       registry=self.registry,
                                       buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
        self._server: WSGIServer | None = None
        self.port: int | None = None

    def serve(self, port: int, addr: str = "0.0.0.0") -> int:
        """Serve ``/metrics`` (Prometheus text) and ``/healthz`` (JSON; 200 when healthy, else 503)."""
        metrics_app = make_wsgi_app(self.registry)

        def app(environ: dict[str, Any], start_response: Any) -> Any:
            if environ.get("PATH_INFO") == "/healthz":
                h = self.health() if self.health is not None else {"status": "ok"}
                body = orjson.dumps(h)
                start_response("200 OK" if h["status"] == "ok" else "503 Service Unavailable",
                               [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
                return [body]
            return metrics_app(environ, start_response)

        server = make_server(addr, port, app, ThreadingWSGIServer, handler_class=_QuietHandler)
        threading.Thread(target=server.serve_forever, name="gridtwin-metrics", daemon=True).start()
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
