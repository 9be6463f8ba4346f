"""The `gridtwin` command: the composition root that wires settings, services, storage and parts.

Every failure a user can cause (bad settings, unreachable services, bad files, unknown ids) ends
as one line on stderr and a non-zero exit, never a traceback. Does I/O.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway import settings as settings_mod
from gateway.cli_base import (
    EXIT_FAILED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    CliError,
    _load_community,
)
from gateway.cli_knowledge import add_parser as add_knowledge_parser
from gateway.cli_knowledge import local_knowledge_at_start
from gateway.cli_month import add_parser as add_report_month_parser
from gateway.cli_patrols import add_parser as add_patrol_sheet_parser
from gateway.cli_reports import add_parser as add_qr_sheet_parser
from gateway.cli_rules import RULES_TEST_START, cmd_rules_check, cmd_rules_test
from gateway.settings import Settings, SettingsError

log = logging.getLogger("gridtwin")

def _settings(args: argparse.Namespace) -> Settings:
    try:
        return settings_mod.load(getattr(args, "config", None))
    except SettingsError as exc:
        raise CliError("bad settings:\n  " + "\n  ".join(exc.problems), EXIT_USAGE) from None


def _urls(s: Settings, *, start: bool = False) -> tuple[str, str, bool]:
    """(mqtt url, db url, broker speaks MQTT 5) after resolution; prints which services were chosen."""
    from gateway.ops import services
    try:
        mqtt, db = services.up(s) if start else services.resolve(s)
    except services.ServiceError as exc:
        raise CliError(str(exc), EXIT_UNAVAILABLE) from None
    for c in (mqtt, db):
        print(f"{c.kind}: {c.source} {_redact(c.url)} ({c.detail})", file=sys.stderr)
    return mqtt.url, db.url, mqtt.mqtt5


def _redact(url: str) -> str:
    from gateway.storage import redact

    return redact(url)


def _storage(s: Settings, db_url: str) -> Any:
    from gateway.storage import Storage, StorageError

    try:
        return Storage.connect(db_url, schema=s.db.schema_name, retention_days=s.db.retention_days,
                               partitions_ahead_days=s.db.partitions_ahead_days,
                               connect_timeout_s=s.db.connect_timeout_s)
    except StorageError as exc:
        raise CliError(str(exc), EXIT_UNAVAILABLE) from None


# -- commands ----------------------------------------------------------------------------------------


def cmd_config_check(args: argparse.Namespace) -> int:
    s = _settings(args)
    print("settings OK")
    for name, value in (("mqtt.url", s.mqtt.url), ("db.url", s.db.url), ("db.schema", s.db.schema_name),
                        ("data_dir", s.data_dir)):
        shown = _redact(value) if isinstance(value, str) else value
        print(f"  {name} = {shown if shown is not None else '(auto)'}")
    return 0


def cmd_config_show(_args: argparse.Namespace) -> int:
    for env, default, desc in settings_mod.describe():
        print(f"{env:<36} {default:<22} {desc}")
    return 0


def cmd_services(args: argparse.Namespace) -> int:
    from gateway.ops import services
    s = _settings(args)
    if args.action == "up":
        _urls(s, start=True)
        return 0
    if args.action == "status":
        rows = services.status(s)
        for r in rows:
            print("  ".join(f"{k}={v}" for k, v in r.items()))
        return 0 if all(r.get("reachable") for r in rows) else 1
    for line in services.down(s):
        print(line)
    return 0


def cmd_db_migrate(args: argparse.Namespace) -> int:
    s = _settings(args)
    _, db_url, _ = _urls(s)
    with _storage(s, db_url) as st:
        applied = _run_storage(st.migrate)
        print(f"backend: {st.backend}; schema {s.db.schema_name} at version {st.schema_version()}")
        print("applied: " + (", ".join(applied) if applied else "nothing (already up to date)"))
    return 0


def cmd_db_latest(args: argparse.Namespace) -> int:
    s = _settings(args)
    _, db_url, _ = _urls(s)
    with _storage(s, db_url) as st:
        if st.schema_version() == 0:
            raise CliError("the database has no gridtwin schema yet: run `gridtwin db migrate`", 1)
        rows = _run_storage(lambda: st.latest(args.device, args.community))
    if not rows:
        print(f"{args.device}: no readings in the last {s.db.retention_days} days")
        return 1
    for r in rows:
        late = "  (late)" if r.flags & 1 else ""
        print(f"{args.device}  {r.metric:<14} {r.value:>12g}  {r.ts.isoformat()}{late}")
    return 0


def cmd_db_maintain(args: argparse.Namespace) -> int:
    s = _settings(args)
    _, db_url, _ = _urls(s)
    with _storage(s, db_url) as st:
        done = _run_storage(st.maintain)
        n = _run_storage(st.refresh_rollup)
    print(f"partitions created: {done['created'] or 'none'}; dropped: {done['dropped'] or 'none'}; "
          f"rollup buckets written: {n if n >= 0 else 'continuous aggregate refreshed'}")
    return 0


def _run_storage(fn: Callable[[], Any]) -> Any:
    from gateway.storage import StorageError

    try:
        return fn()
    except StorageError as exc:
        raise CliError(str(exc), 1) from None


def cmd_community_load(args: argparse.Namespace) -> int:
    s = _settings(args)
    community = _load_community(args.file)
    _, db_url, _ = _urls(s)
    with _storage(s, db_url) as st:
        _run_storage(st.migrate)
        report = _run_storage(lambda: st.load_community(community))
    print("\n".join(report.lines()))
    return 0


def cmd_community_generate(args: argparse.Namespace) -> int:
    import orjson
    import yaml

    from twin.community import CommunityError, parse
    from twin.generate import generate

    doc = generate(args.buildings, seed=args.seed, devices=args.devices, community_id=args.id, name=args.name)
    if args.out.suffix == ".json":
        text = orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode()
    else:
        text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False, default_flow_style=None, width=120)
    try:
        c = parse(text, str(args.out))  # what we write must load
    except CommunityError as exc:
        raise CliError(f"generated community is invalid (a bug): {exc}", 1) from None
    try:
        args.out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot write {args.out}: {exc.strerror}", EXIT_USAGE) from None
    print(f"{args.out}: {len(c.buildings)} buildings, {len(c.devices)} devices, {len(c.grids)} grids")
    return 0


def cmd_community_check(args: argparse.Namespace) -> int:
    c = _load_community(args.file)
    print(f"{args.file}: OK: {c.name} ({c.id}), {len(c.buildings)} buildings, {len(c.devices)} devices")
    return 0


def cmd_devices_credentials(args: argparse.Namespace) -> int:
    from gateway.ops import credentials
    s = _settings(args)
    _, db_url, _ = _urls(s)
    with _storage(s, db_url) as st:
        if st.schema_version() == 0:
            raise CliError("the database has no gridtwin schema yet: run `gridtwin community load FILE`", 1)
        devs = [(d.community, d.code) for d in _run_storage(st.devices)
                if args.community is None or d.community == args.community]
    if not devs:
        raise CliError("no devices in the registry" + (f" for community {args.community!r}" if args.community
                                                       else "") + ": load a community first", 1)
    try:
        rep = credentials.generate(devs, args.out, root=s.mqtt.topic_root)
    except OSError as exc:
        raise CliError(f"cannot write credentials to {args.out}: {exc.strerror}", EXIT_USAGE) from None
    print(f"{rep.devices} devices ({rep.added} new, {rep.removed} removed) + accounts gateway, dashboard, simulator")
    for f in rep.files:
        print(f"  wrote {f}")
    print("point Mosquitto at them: password_file <passwd>, acl_file <acl>, allow_anonymous false")
    return 0


def cmd_gateway(args: argparse.Namespace) -> int:
    from gateway.ops import services
    s = _settings(args)
    local_knowledge_at_start(s.knowledge.dirs)  # tickets quote it: a broken one stops the start, never ingest later
    mqtt_url, db_url, mqtt5 = _urls(s)
    # The embedded amqtt fallback loses what is published while the gateway is down: never in production
    # (the demo still runs on it, with a warning).
    problem = services.not_durable(s, mqtt_url)
    if problem is not None:
        raise CliError(problem, EXIT_UNAVAILABLE)
    gw = _make_gateway(s, mqtt_url, db_url, mqtt5)
    stop = _stop_event(args.duration)
    try:
        gw.run_forever(stop, report_every_s=args.report_every)
    except Exception as exc:
        _reraise_unavailable(exc)
        raise
    print(f"gateway stopped: {gw.stats.snapshot()}")
    return 0


def _make_gateway(s: Settings, mqtt_url: str, db_url: str, mqtt5: bool) -> Any:
    from gateway.ingest.pipeline import Gateway
    from gateway.storage import StorageError
    from twin.rules import RulesError

    if s.mqtt.shared_group:
        raise CliError("GRIDTWIN_MQTT_SHARED_GROUP is not supported ($share splits a community's devices across "
                       "gateways, which breaks its rules): set GRIDTWIN_CLUSTER_ENABLED=true on each gateway "
                       "instead (docs/scale-out.md)", EXIT_USAGE)
    try:
        return Gateway(s, mqtt_url, db_url, mqtt5=mqtt5)
    except StorageError as exc:
        raise CliError(str(exc), EXIT_UNAVAILABLE) from None
    except RulesError as exc:
        raise CliError("rules cannot be used:\n  " + "\n  ".join(exc.problems), EXIT_USAGE) from None


def _reraise_unavailable(exc: Exception) -> None:
    from gateway.ingest.pipeline import BrokerUnavailable, GatewayFailed, PortBusy

    if isinstance(exc, BrokerUnavailable):
        raise CliError(str(exc), EXIT_UNAVAILABLE) from None
    if isinstance(exc, PortBusy):
        raise CliError(str(exc), EXIT_USAGE) from None
    if isinstance(exc, GatewayFailed):  # a supervisor (systemd, compose restart: always) starts us again
        raise CliError(f"gateway stopped: {exc}", EXIT_FAILED) from None


def _stop_event(duration: float | None) -> threading.Event:
    stop = threading.Event()

    def handler(_sig: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    if duration is not None:
        timer = threading.Timer(duration, stop.set)
        timer.daemon = True
        timer.start()
    return stop


def cmd_simulate(args: argparse.Namespace) -> int:
    """Telemetry, a scenario, a scale run or hostile traffic; everything is validated before publishing."""
    from simulators import run as sim
    from simulators.errors import BrokerUnreachable, SimulationError

    try:
        if args.list:
            print(sim.list_text())
            return 0
        s = _settings(args)
        given = {k: v for k, v in vars(args).items() if k in sim.Request.names() and v is not None}
        given.update(community=_load_community(args.community), root=s.mqtt.topic_root,
                     qos=s.mqtt.qos if args.qos is None else args.qos,
                     max_payload_bytes=s.gateway.max_payload_bytes, max_fields=s.gateway.max_fields)
        job = sim.prepare(sim.Request(**given))
        stop = _stop_event(None if args.scale else args.duration)  # a scale run times itself
        if args.stdout:
            summary = job.run_stdout(sim.binary_stdout(), stop)
        else:
            mqtt_url, _db, mqtt5 = _urls(s)
            summary = job.run_mqtt(mqtt_url, mqtt5=mqtt5, stop=stop)
    except SimulationError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    except BrokerUnreachable as exc:
        raise CliError(f"{exc}. Start it (`gridtwin services up`) or set GRIDTWIN_MQTT_URL.",
                       EXIT_UNAVAILABLE) from None
    print(summary, file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Bring services up, migrate, load the sample community, run gateway + simulator + dashboard."""
    from gateway.ops import demo
    from gateway.web import composition as dashboard_data
    s = _settings(args)
    url = demo.served_url(s.demo.http_port)
    s = demo.served_settings(s, url)  # the rating link points at the dashboard served here
    mqtt_url, db_url, mqtt5 = _urls(s, start=True)
    community = _load_community(s.demo.community_file)
    with _storage(s, db_url) as st:
        _run_storage(st.migrate)
        print("\n".join(_run_storage(lambda: st.load_community(community)).lines()))
    gw = _make_gateway(s, mqtt_url, db_url, mqtt5)
    stop = _stop_event(args.duration)
    try:
        gw.start()
    except Exception as exc:
        _reraise_unavailable(exc)
        raise
    sim = threading.Thread(target=_demo_incidents, args=(community, s, mqtt_url, mqtt5, stop), daemon=True)
    sim.start()
    accounts = dashboard_data.seed_demo_users(db_url, community, dashboard_data.DEMO_PASSWORD,
                                              schema=s.db.schema_name)
    try:
        server = dashboard_data.start_dashboard(s, community, db_url, mqtt_url, host=demo.DEMO_HOST,
                                                port=s.demo.http_port)
    except OSError as exc:
        stop.set()
        gw.stop()
        raise CliError(f"cannot serve the dashboard on port {s.demo.http_port}: {exc.strerror} "
                       "(choose another with GRIDTWIN_DEMO_HTTP_PORT)", EXIT_USAGE) from None
    print(f"\n  dashboard:  {url}/   (Ctrl-C stops the demo)\n"
          f"  accounts:   {', '.join(accounts)}\n"
          f"  password:   {dashboard_data.DEMO_PASSWORD}\n", flush=True)
    status = demo.DemoStatus()
    with _storage(s, db_url) as st:
        while not stop.wait(5):
            if gw.failed.is_set():
                stop.set()
                gw.stop()
                server.shutdown()
                raise CliError(f"gateway stopped: {gw.failure}", EXIT_FAILED)
            try:
                line = status.update(demo.read_counts(st.conn, gw.stats.snapshot()), datetime.now())
            except Exception as exc:  # the database is away (the gateway spools): say so, once
                line = status.update(demo.counts(gw.stats.snapshot(), None, 0, None), datetime.now())
                log.debug("demo status: %s", exc)
            if line:
                print(line, flush=True)
    sim.join(timeout=10)
    gw.wait_idle(10)
    gw.stop()
    server.shutdown()
    snap = gw.stats.snapshot()
    print(f"demo stopped: {snap['readings_written']:,} readings and {snap['events_written']:,} events stored, "
          f"{snap['alarm_events']:,} alarm events")
    return 0 if snap["readings_written"] > 0 else 1


DEMO_INCIDENTS = ("fire", "gas-leak", "elevator-entrapment", "hydrant-pressure-loss", "flapping-sensor")
DEMO_LEAD_S = 150.0  # scenarios start their incident after 2-3 minutes; skip most of that lead-in


def _demo_incidents(community: Any, s: Settings, mqtt_url: str, mqtt5: bool, stop: threading.Event) -> None:
    """The demo's devices: incident scenarios back to back, each on top of the quiet baseline, in real
    time. Timestamps run DEMO_LEAD_S behind the wall clock, so the first alarm shows within a minute."""
    from simulators.errors import SimulationError
    from simulators.run import Request, prepare

    i = 0
    while not stop.is_set():
        name = DEMO_INCIDENTS[i % len(DEMO_INCIDENTS)]
        i += 1
        req = Request(community=community, root=s.mqtt.topic_root, qos=s.mqtt.qos, scenario=name,
                      speed=1.0, start=time.time() - DEMO_LEAD_S, catch_up=DEMO_LEAD_S, clients="shared",
                      seed=i)
        try:
            summary = prepare(req).run_mqtt(mqtt_url, mqtt5=mqtt5, stop=stop)
        except (SimulationError, ConnectionError, OSError) as exc:
            log.error("demo simulator stopped: %s", exc)
            return
        log.info("demo: %s", summary)


def _benchmarks_importable() -> None:
    """The benchmark suite lives in the source checkout (``benchmarks/``), not in the wheel."""
    try:
        import benchmarks  # noqa: F401
    except ImportError:
        root = Path(__file__).resolve().parents[1]
        if not (root / "benchmarks" / "__init__.py").is_file():
            raise CliError("the benchmarks ship with the source checkout, not the installed package: "
                           "run `gridtwin bench` from a clone of the repository", EXIT_USAGE) from None
        sys.path.insert(0, str(root))


def cmd_bench(args: argparse.Namespace) -> int:
    """Run one benchmark; print progress to stderr and the result as JSON (stdout) and a results file."""

    _benchmarks_importable()

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    if args.what in ("rules", "detection", "qa"):  # pure: no database or broker
        result = _bench_pure(args)
        return _bench_report(args, result)
    from benchmarks import ingest as bench
    s = _settings(args)
    mqtt_url, db_url, _ = _urls(s)
    if args.what == "ingest":
        result = bench.bench_ingest(db_url, messages=args.messages or 100_000, qos=args.qos, repeats=args.repeats,
                                    transport=args.transport, log=log)
    elif args.what == "dashboard":
        from benchmarks import dashboard as bench_dashboard
        result = bench_dashboard.bench_dashboard(db_url, buildings=args.buildings, devices=args.devices,
                                                 runs=args.repeats, live_s=args.seconds or 15.0,
                                                 plotly_gl3d=not args.full_plotly, log=log)
    elif args.what == "live":
        from benchmarks import live as bench_live
        result = bench_live.bench_live(db_url, mqtt_url, rate=args.rate or 50.0, seconds=args.seconds or 30.0, log=log)
    elif args.what == "writer":
        result = bench.bench_writer(db_url, rows=args.messages or 500_000, repeats=args.repeats)
    elif args.what == "latency":
        result = bench.bench_latency(db_url, sustained=args.rate or 14_000.0, load_fraction=args.load,
                                     seconds=args.seconds or 30.0, log=log)
    elif args.what == "memory":
        result = bench.bench_memory(db_url, minutes=args.minutes, rate=args.rate or 10_000.0, log=log)
    elif args.what == "faults":
        from benchmarks import faults as bench_faults
        rows: Any = bench_faults.bench_faults(db_url, repeats=args.repeats, transport=args.transport,
                                              messages=args.messages or 5000, rate=args.rate or 500.0, log=log,
                                              faults=args.fault or bench_faults.FAULTS)
        result = rows  # a JSON list: one row per run
    elif args.what == "api":
        from benchmarks import api as bench_api
        result = bench_api.bench_api(db_url, seconds=args.seconds or 60.0, clients=args.clients,
                                     workers=args.workers, log=log)
    elif args.what == "scale":
        from benchmarks import scale as bench_scale
        scale_rows: Any = bench_scale.bench_scale(db_url, gateways=args.gateways or [1, 2, 3],
                                                  messages=args.messages or 60_000, rate=args.rate or 20_000.0, log=log)
        log(bench_scale.table(scale_rows))
        result = scale_rows  # a JSON list: one row per gateway count
    else:
        raise CliError(f"unknown benchmark {args.what!r}", EXIT_USAGE)
    return _bench_report(args, result)


def _bench_pure(args: argparse.Namespace) -> Any:
    """The benchmarks that need no services: the rules engine's cost, how soon a scenario is detected, and how
    well the knowledge assistant answers the question sets."""
    if args.what == "qa":
        from benchmarks import qa as bench_qa
        try:
            return bench_qa.bench_qa()
        except ValueError as e:
            raise CliError(f"qa: {e}", EXIT_USAGE) from None
    if args.what == "rules":
        from benchmarks import rules as bench_rules
        return bench_rules.bench_rules(messages=args.messages or 100_000)
    from benchmarks import detection as bench_detection
    from simulators.scenario import parse_duration
    try:
        onset = parse_duration(args.onset)
    except ValueError as e:
        raise CliError(f"--onset {args.onset!r}: {e}", EXIT_USAGE) from None
    return bench_detection.detection(args.scenario, onset, [_rules_defaults_file()])


def _rules_defaults_file() -> Path:
    from twin.rules import DEFAULTS_FILE
    return Path(DEFAULTS_FILE)


def _bench_report(args: argparse.Namespace, result: Any) -> int:
    """Print a benchmark's result as JSON and keep a copy under benchmarks/results/."""
    import json

    text = json.dumps(result, ensure_ascii=False, indent=None if args.json else 2)
    print(text)
    out_dir = Path("benchmarks") / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    (out_dir / f"{args.what}-{stamp}.json").write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """The dashboard and the REST API on uvicorn, ``--workers`` processes (each builds the app from the
    settings: gateway.web.asgi.app_from_environment); SIGINT/SIGTERM stop it gracefully."""
    import os
    import socket

    from gateway.web import composition, server
    s = _settings(args)
    local_knowledge_at_start(s.knowledge.dirs)  # each worker loads it again (create_api): fail here, clearly
    mqtt_url, db_url, _ = _urls(s)
    community = _run_storage(lambda: composition.community_in_database(db_url, schema=s.db.schema_name))
    if community is None:
        raise CliError("no community in the database: load one first (`gridtwin community load FILE`)", 1)
    port = args.port or s.demo.http_port
    try:
        with socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((args.host, port))
    except OSError as exc:
        raise CliError(f"cannot serve on {args.host}:{port}: {exc.strerror}", EXIT_USAGE) from None
    os.environ.update({"GRIDTWIN_DB_URL": db_url, "GRIDTWIN_MQTT_URL": mqtt_url})  # as resolved, for the workers
    if "public_url" not in s.api.model_fields_set:  # links handed out (rating, tracking) name the port served
        from gateway.ops.demo import served_url
        os.environ["GRIDTWIN_API_PUBLIC_URL"] = served_url(port, "127.0.0.1" if args.host in ("0.0.0.0", "::")
                                                           else args.host)
    if getattr(args, "config", None):
        os.environ["GRIDTWIN_CONFIG"] = str(args.config)
    print(f"dashboard: http://{args.host}:{port}/ ({args.workers} worker{'s' if args.workers > 1 else ''})",
          flush=True)
    server.serve_workers("gateway.web.asgi:app_from_environment", host=args.host, port=port, workers=args.workers)
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    """A PNG of the community in 3D; --highlight marks a device and paints its floor critical."""
    community = _load_community(args.community)
    floor_class: dict[tuple[str, int], str] = {}
    device_class: dict[str, str] = {}
    highlight = None
    if args.highlight is not None:
        dev = community.device(args.highlight)
        if dev is None:
            raise CliError(f"unknown device {args.highlight!r} in community {community.id}", EXIT_USAGE)
        if args.building is not None and dev.building is not None and dev.building != args.building:
            raise CliError(f"device {dev.id} is in building {dev.building}, not {args.building}", EXIT_USAGE)
        highlight = (dev.building, dev.floor, dev.id)
        device_class[dev.id] = "critical"
        if dev.building is not None and dev.floor is not None:
            floor_class[(dev.building, dev.floor)] = "critical"
    from viz import render
    try:
        out = render.render_png(community, args.out, floor_class=floor_class, device_class=device_class,
                                highlight=highlight, building=args.building, floor=args.floor)
    except render.RenderError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    print(f"wrote {out}")
    return 0


def _stored_communities(st: Any) -> list[Any]:
    """The communities loaded into the database (for worker and grid names)."""
    import functools

    from pydantic import ValidationError

    from twin.community import Community

    out = []
    for code in _run_storage(st.community_codes):
        doc = _run_storage(functools.partial(st.community_document, code))
        try:
            out.append(Community.model_validate(doc, context={"defer_references": True}))
        except ValidationError:
            log.warning("community %s in the database does not validate; its names are left out", code)
    return out


def _need_tickets_schema(st: Any) -> None:
    if _run_storage(st.schema_version) < 7:
        raise CliError("the database has no ticket tables yet: run `gridtwin db migrate`", 1)


def _day(text: str) -> Any:
    from datetime import date

    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2025-06-30") from None


def cmd_report_kpi(args: argparse.Namespace) -> int:
    """KPIs per worker, grid and community of the tickets created from --from to --to (local days, inclusive)."""
    from datetime import datetime, time, timedelta

    from gateway.tickets.service import TicketService, kpi_csv
    from twin.tickets import kpi_markdown

    if args.to < args.start:
        raise CliError(f"--to {args.to} is before --from {args.start}", EXIT_USAGE)
    s = _settings(args)
    _, db_url, _ = _urls(s)
    with _storage(s, db_url) as st:
        _need_tickets_schema(st)
        svc = TicketService(st, s, _stored_communities(st))
        start = datetime.combine(args.start, time(0), svc.tz)
        end = datetime.combine(args.to + timedelta(days=1), time(0), svc.tz)
        rows = _run_storage(lambda: svc.kpis(start, end, community=args.community))
    if args.format == "csv":
        sys.stdout.write(kpi_csv(rows))
    else:
        sys.stdout.write(kpi_markdown(rows, f"工单考核 KPIs {args.start} .. {args.to}"))
    if not rows:
        print(f"no tickets created from {args.start} to {args.to}", file=sys.stderr)
    return 0


def cmd_users_add(args: argparse.Namespace) -> int:
    """Create (or with --update change) an API user; the password from --password, --password-file, stdin or a
    prompt."""
    import getpass

    from gateway.api.auth import AuthError, Users

    password = args.password
    if password is None and args.password_file is not None:
        try:
            password = args.password_file.read_text(encoding="utf-8").splitlines()[0]
        except (OSError, IndexError) as exc:
            raise CliError(f"cannot read a password from {args.password_file}: {exc}", EXIT_USAGE) from None
    if password is None:
        if sys.stdin is not None and sys.stdin.isatty():
            password = getpass.getpass(f"password for {args.username}: ")
            if getpass.getpass("again: ") != password:
                raise CliError("the passwords differ", EXIT_USAGE)
        else:
            password = (sys.stdin.readline() if sys.stdin is not None else "").rstrip("\r\n")
    s = _settings(args)
    _, db_url, _ = _urls(s)
    with _storage(s, db_url) as st:
        _run_storage(st.migrate)
        try:
            created = Users(st.conn).add(args.username, password, args.role, display_name=args.name,
                                         grids=args.grid or [], worker_id=args.worker_id, update=args.update)
        except AuthError as exc:
            raise CliError(str(exc), EXIT_USAGE) from None
    grids = f" grids {','.join(args.grid)}" if args.grid else ""
    worker = f" worker {args.worker_id}" if args.worker_id else ""
    print(f"{'added' if created else 'updated'} user {args.username}: role {args.role}{grids}{worker}")
    return 0


# -- parser ------------------------------------------------------------------------------------------


def _positive(kind: type[float] | type[int]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if v <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
        return v

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gridtwin", description="IoT digital twin for residential communities")
    p.add_argument("--config", type=Path, help="YAML settings file (also GRIDTWIN_CONFIG)")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    cfg = sub.add_parser("config", help="check or list settings").add_subparsers(dest="action", required=True)
    cfg.add_parser("check", help="validate settings and explain each bad key").set_defaults(fn=cmd_config_check)
    cfg.add_parser("show", help="list every setting with its env name").set_defaults(fn=cmd_config_show)

    sv = sub.add_parser("services", help="broker and database: up | status | down")
    sv.add_argument("action", choices=["up", "status", "down"])
    sv.set_defaults(fn=cmd_services)

    db = sub.add_parser("db", help="database tasks").add_subparsers(dest="action", required=True)
    db.add_parser("migrate", help="apply schema migrations (idempotent)").set_defaults(fn=cmd_db_migrate)
    lt = db.add_parser("latest", help="latest readings of one device")
    lt.add_argument("device")
    lt.add_argument("--community")
    lt.set_defaults(fn=cmd_db_latest)
    db.add_parser("maintain", help="partitions ahead, retention, rollup").set_defaults(fn=cmd_db_maintain)

    cm = sub.add_parser("community", help="community description files").add_subparsers(dest="action",
                                                                                         required=True)
    ld = cm.add_parser("load", help="load a community YAML into the registry")
    ld.add_argument("file", type=Path)
    ld.set_defaults(fn=cmd_community_load)
    ck = cm.add_parser("check", help="validate a community YAML")
    ck.add_argument("file", type=Path)
    ck.set_defaults(fn=cmd_community_check)
    gn = cm.add_parser("generate", help="write a synthetic community (YAML, or JSON if FILE ends in .json)")
    gn.add_argument("--buildings", type=_positive(int), default=12)
    gn.add_argument("--devices", type=_positive(int), help="aim for about this many devices")
    gn.add_argument("--seed", type=int, default=7)
    gn.add_argument("--id", default="synthetic", help="community id")
    gn.add_argument("--name", default="合成社区")
    gn.add_argument("--out", type=Path, required=True)
    gn.set_defaults(fn=cmd_community_generate)

    dv = sub.add_parser("devices", help="device provisioning").add_subparsers(dest="action", required=True)
    cr = dv.add_parser("credentials", help="per-device MQTT passwords and the broker ACL from the registry")
    cr.add_argument("--out", type=Path, required=True, help="directory for passwd, acl and secrets.csv")
    cr.add_argument("--community", help="only this community's devices")
    cr.set_defaults(fn=cmd_devices_credentials)

    gw = sub.add_parser("gateway", help="run the ingest gateway (MQTT -> PostgreSQL)")
    gw.add_argument("--duration", type=_positive(float), help="stop after this many seconds")
    gw.add_argument("--report-every", type=_positive(float), default=10.0)
    gw.set_defaults(fn=cmd_gateway)

    sm = sub.add_parser("simulate", help="simulated devices: telemetry, scenarios, scale and hostile runs")
    mode = sm.add_mutually_exclusive_group()
    mode.add_argument("--list", action="store_true", help="name every shipped scenario with a one-line description")
    mode.add_argument("--scenario", metavar="NAME|FILE", help="run a scenario (see --list) or a scenario YAML file")
    mode.add_argument("--scale", action="store_true",
                      help="--devices N at --rate R over one connection; reports the achieved rate")
    mode.add_argument("--hostile", action="store_true",
                      help="--count N malformed or rule-breaking messages; --manifest lists the expected rejections")
    sm.add_argument("--community", type=Path, help="community YAML (default: bundled sample)")
    sm.add_argument("--devices", type=_positive(int), help="only the first N devices (--scale: N devices)")
    sm.add_argument("--count", type=_positive(int), help="stop after N messages")
    sm.add_argument("--duration", type=_positive(float), help="stop after this many wall-clock seconds")
    sm.add_argument("--rate", type=_positive(float), help="messages per second (default: as fast as possible)")
    sm.add_argument("--step", type=_positive(float), default=1.0, help="simulated seconds between rounds")
    sm.add_argument("--start", type=float,
                    help="simulated start, epoch seconds (default: now; accelerated scenarios end now)")
    sm.add_argument("--seed", type=int, default=1)
    sm.add_argument("--stdout", action="store_true",
                    help='write JSON lines {"topic","payload"} (payload_b64 if not JSON) instead of publishing')
    sm.add_argument("--qos", type=int, choices=[0, 1, 2], help="publish QoS (default: GRIDTWIN_MQTT_QOS)")
    sm.add_argument("--speed", type=float, help="scenario: simulated seconds per wall second (default 1; 0: flat out)")
    sm.add_argument("--fast", action="store_true", help="scenario: as fast as possible (same as --speed 0)")
    sm.add_argument("--sim-duration", metavar="D", help="scenario: simulated length such as 90s, 15m, 24h")
    sm.add_argument("--pin", action="append", metavar="ROLE=DEVICE", help="scenario: play ROLE with this device")
    sm.add_argument("--clients", choices=["per-device", "shared"],
                    help="scenario: one MQTT client per device with a last will (default) or one connection")
    sm.add_argument("--device-secrets", type=Path, metavar="CSV",
                    help="scenario, per-device clients: username,password CSV from `gridtwin credentials`")
    sm.add_argument("--kinds", metavar="KIND[,KIND]", help="default mode: only devices of these kinds")
    sm.add_argument("--manifest", type=Path, help="hostile: write each message's expected outcome (JSON lines)")
    sm.set_defaults(fn=cmd_simulate)

    dm = sub.add_parser("demo", help="run the whole system on the sample community")
    dm.add_argument("--duration", type=_positive(float), help="stop after this many seconds (default: Ctrl-C)")
    dm.set_defaults(fn=cmd_demo)

    bn = sub.add_parser("bench", help="benchmarks (results as JSON; see BENCHMARKS.md)")
    bn.add_argument("what", choices=["ingest", "writer", "latency", "memory", "faults", "api", "scale", "rules",
                                     "detection", "dashboard", "live", "qa"])
    bn.add_argument("--scenario", default="hydrant-pressure-loss", help="detection: the scenario to replay")
    bn.add_argument("--onset", default="5m", help="detection: when the scenario's incident starts (e.g. 5m)")
    bn.add_argument("--json", action="store_true", help="one-line JSON")
    bn.add_argument("--gateways", type=_positive(int), action="append",
                    help="scale: run with this many cluster gateways (repeatable; default 1, 2 and 3)")
    bn.add_argument("--messages", type=_positive(int), help="messages (ingest) or rows (writer)")
    bn.add_argument("--qos", type=int, choices=[0, 1], default=1)
    bn.add_argument("--transport", choices=["fast", "paho", "both"], default="fast",
                    help="ingest: the gateway's MQTT transport; both = side by side on the same load")
    bn.add_argument("--repeats", type=_positive(int), default=3)
    bn.add_argument("--fault", action="append",
                    choices=["kill9_gateway", "db_restart", "broker_restart", "db_down_at_start"],
                    help="faults: run only this one (repeatable)")
    bn.add_argument("--minutes", type=_positive(float), default=10.0, help="memory: run length")
    bn.add_argument("--rate", type=_positive(float),
                    help="memory: publish rate msg/s; latency: the sustained ingest rate the load is a fraction of; "
                         "live: alarm events/s (default 50)")
    bn.add_argument("--load", type=_positive(float), default=0.5, help="latency: fraction of --rate as load")
    bn.add_argument("--seconds", type=_positive(float),
                    help="run length: latency (default 30), api (default 60), live (default 30); "
                         "dashboard: how long the page stays open after the first renders (default 15)")
    bn.add_argument("--clients", type=_positive(int), default=50, help="api: concurrent clients")
    bn.add_argument("--workers", type=_positive(int), help="api: server worker processes (gridtwin serve --workers)")
    bn.add_argument("--buildings", type=_positive(int),
                    help="dashboard: a generated community of this many buildings (default: the sample)")
    bn.add_argument("--devices", type=_positive(int), help="dashboard: devices of the generated community")
    bn.add_argument("--full-plotly", action="store_true",
                    help="dashboard: serve the full plotly.js bundle (before the gl3d one, for comparison)")
    bn.set_defaults(fn=cmd_bench)

    se = sub.add_parser("serve", help="serve the dashboard and the REST API")
    se.add_argument("--host", default="127.0.0.1")
    se.add_argument("--port", type=int)
    se.add_argument("--workers", type=_positive(int), default=1,
                    help="server processes (each with its own database pool); Ctrl-C/SIGTERM stops them gracefully")
    se.set_defaults(fn=cmd_serve)

    rd = sub.add_parser("render", help="render the community in 3D to a PNG (offscreen)")
    rd.add_argument("--out", type=Path, required=True, metavar="FILE.png", help="PNG file to write")
    rd.add_argument("--community", type=Path, help="community YAML (default: bundled sample)")
    rd.add_argument("--building", metavar="ID", help="zoom to this building")
    rd.add_argument("--floor", type=int, metavar="N", help="zoom to this floor of --building (B1 = -1)")
    rd.add_argument("--highlight", metavar="DEVICE_ID", help="mark this device and paint its floor critical")
    rd.set_defaults(fn=cmd_render)

    ru = sub.add_parser("rules", help="alarm rules: check a file, replay a scenario offline").add_subparsers(
        dest="action", required=True)
    rc = ru.add_parser("check", help="validate rules (FILE merged over the shipped defaults)")
    rc.add_argument("file", type=Path, nargs="?", help="site rules file (default: only the shipped defaults)")
    rc.add_argument("--community", type=Path, help="community YAML (default: bundled sample)")
    rc.add_argument("--no-defaults", action="store_true", help="FILE alone, not merged over the shipped defaults")
    rc.set_defaults(fn=cmd_rules_check)
    rt = ru.add_parser("test", help="replay a simulator scenario offline: its alarm events, the incidents (tickets) "
                                    "they make and whether those meet the scenario's expect: block")
    rt.add_argument("file", type=Path, nargs="?", help="site rules merged over the shipped defaults")
    rt.add_argument("--scenario", required=True, help="fire, gas-leak, elevator-entrapment, ... or a .yaml file")
    rt.add_argument("--community", type=Path, help="community YAML (default: bundled sample)")
    rt.add_argument("--no-defaults", action="store_true", help="FILE alone, not merged over the shipped defaults")
    rt.add_argument("--start", help=f"simulated start, ISO-8601 with offset or epoch s (default {RULES_TEST_START})")
    rt.add_argument("--seed", type=int, default=1)
    rt.add_argument("--raised-only", action="store_true", help="of the alarm events, print only raised ones")
    rt.add_argument("--incidents", action="store_true",
                    help="print only the incidents (one ticket each: title, category, priority, alarms)")
    rt.add_argument("--json-lines", action="store_true",
                    help="one JSON object per line with its type: alarm_event, incident, expect (the check)")
    rt.add_argument("--check", action="store_true",
                    help="exit 1 unless the incidents meet the scenario's expect: block")
    rt.add_argument("--incident-file", type=Path, action="append", metavar="FILE",
                    help="site incident policy merged over twin/incidents_defaults.yaml")
    rt.set_defaults(fn=cmd_rules_test)

    rp = sub.add_parser("report", help="reports").add_subparsers(dest="action", required=True)
    rk = rp.add_parser("kpi", help="ticket KPIs per worker, grid and community (CSV or Markdown)")
    rk.add_argument("--from", dest="start", type=_day, required=True, metavar="DATE", help="first local day")
    rk.add_argument("--to", type=_day, required=True, metavar="DATE", help="last local day (inclusive)")
    rk.add_argument("--format", choices=["csv", "md"], default="md")
    rk.add_argument("--community", help="only this community")
    rk.set_defaults(fn=cmd_report_kpi)
    add_report_month_parser(rp)  # gridtwin report month (gateway/cli_month.py)

    us = sub.add_parser("users", help="API users").add_subparsers(dest="action", required=True)
    ua = us.add_parser("add", help="add (or --update) a user of the REST API")
    ua.add_argument("username")
    ua.add_argument("--role", required=True, choices=["worker", "supervisor", "operator", "admin"])
    ua.add_argument("--grid", action="append", metavar="G", help="a grid the user serves (repeatable)")
    ua.add_argument("--worker-id", metavar="W", help="the worker's (or supervisor's) id in the community file")
    ua.add_argument("--name", help="display name")
    ua.add_argument("--password", help="the password (else --password-file, standard input or a prompt)")
    ua.add_argument("--password-file", type=Path, help="read the password from the first line of this file")
    ua.add_argument("--update", action="store_true", help="change an existing user")
    ua.set_defaults(fn=cmd_users_add)

    add_qr_sheet_parser(sub)  # gridtwin qr-sheet (gateway/cli_reports.py)
    add_patrol_sheet_parser(sub)  # gridtwin patrol-sheet (gateway/cli_patrols.py)
    add_knowledge_parser(sub, _settings)  # gridtwin knowledge check (gateway/cli_knowledge.py)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        code: int = args.fn(args)
    except CliError as exc:
        print(f"gridtwin: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
