"""The one settings model for the whole system.

Sources, highest priority first: explicit keyword arguments (tests, CLI flags), environment
variables with the ``GRIDTWIN_`` prefix (``GRIDTWIN_MQTT_URL`` sets ``mqtt.url``; the first
``_`` after the section name splits section from key), a YAML config file (``--config`` or
``GRIDTWIN_CONFIG``), and the defaults below. Unknown keys anywhere are errors, and
:func:`check` explains every bad key with where it came from. Reads files and the environment.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import socket
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings import SettingsError as PydanticSettingsError
from pydantic_settings.sources.utils import parse_env_vars

ENV_PREFIX = "GRIDTWIN_"
_IDENT = re.compile(r"^[a-z][a-z0-9_]{0,40}$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MqttSettings(_Section):
    url: str | None = Field(
        default=None,
        description="mqtt://user:pass@host:port; unset = a broker on localhost:1883, else an embedded one",
    )
    topic_root: str = Field(default="gridtwin", description="first topic level of every gridtwin topic")
    client_id: str = Field(
        default="",
        description="gateway's MQTT client id; empty = gridtwin-{host}-{random}, made once and kept in "
                    "{data_dir}/mqtt-client-id (so two gateways never share one by accident)",
    )
    qos: int = Field(default=1, ge=0, le=1, description="QoS for subscriptions and simulator publishes (0 or 1)")
    keepalive: int = Field(default=30, ge=5, le=3600)
    shared_group: str | None = Field(
        default=None, description="not supported: $share splits a community's devices across gateways, which "
                                   "breaks its rules; use cluster.enabled (docs/scale-out.md)"
    )
    protocol: Literal["3.1.1", "5"] = Field(default="3.1.1", description="MQTT version the gateway speaks")
    ca_file: Path | None = Field(default=None,
                                 description="mqtts://: CA certificates to trust (PEM); unset = system CAs")
    cert_file: Path | None = Field(default=None, description="mqtts://: client certificate (PEM), for brokers that "
                                                              "require one")
    key_file: Path | None = Field(default=None, description="mqtts://: the client certificate's private key (PEM); "
                                                             "unset = in cert_file")
    status: bool = Field(default=True, description="publish the gateway's retained online/offline status "
                                                    "(birth message, last will) on status_topic")
    status_topic: str = Field(default="", description="where the gateway's status goes; empty = "
                                                       "{topic_root}/v1/gateways/{client_id}")
    transport: Literal["fast", "paho"] = Field(
        default="fast",
        description="gateway's MQTT client: fast (built in, MQTT 3.1.1, batched acks) or paho (also used for MQTT 5)",
    )

    @field_validator("url")
    @classmethod
    def _url_scheme(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^mqtts?://[^/\s]+(:\d+)?/?$", v):
            raise ValueError("must look like mqtt://[user:password@]host[:port] (or mqtts://)")
        return v

    @field_validator("topic_root")
    @classmethod
    def _topic_root(cls, v: str) -> str:
        if not v or any(c in v for c in "+#\0") or v.startswith("/") or v.endswith("/"):
            raise ValueError("must be a non-empty topic prefix without wildcards or leading/trailing '/'")
        return v

    @field_validator("status_topic")
    @classmethod
    def _status_topic(cls, v: str) -> str:
        if v and (any(c in v for c in "+#\0") or v.startswith("$")):
            raise ValueError("must be a topic name without wildcards, not starting with '$'")
        return v

    @field_validator("client_id")
    @classmethod
    def _client_id(cls, v: str) -> str:
        if len(v.encode()) > 128 or any(c in v for c in "\0+#"):
            raise ValueError("must be at most 128 bytes without '+', '#' or NUL")
        return v

    @model_validator(mode="after")
    def _key_needs_cert(self) -> MqttSettings:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file needs cert_file (the client certificate it belongs to)")
        return self

    def gateway_status_topic(self) -> str:
        """Where the gateway publishes its retained online/offline status (outside every device topic)."""
        return self.status_topic or f"{self.topic_root}/v1/gateways/{self.client_id}"


class DbSettings(_Section):
    url: str | None = Field(
        default=None,
        description="postgresql://user@host:port/db; unset = PostgreSQL on localhost:5432, else embedded",
    )
    schema_name: str = Field(default="gridtwin", alias="schema", description="PostgreSQL schema for all tables")
    retention_days: int = Field(default=30, ge=1, le=3650, description="raw telemetry kept this many days")
    partitions_ahead_days: int = Field(default=3, ge=1, le=60, description="plain PG: daily partitions made ahead")
    pool_size: int = Field(default=4, ge=1, le=64)
    connect_timeout_s: float = Field(default=5.0, gt=0, le=120)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("url")
    @classmethod
    def _url_scheme(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^postgres(ql)?://", v):
            raise ValueError("must start with postgresql://")
        return v

    @field_validator("schema_name")
    @classmethod
    def _schema(cls, v: str) -> str:
        if not _IDENT.match(v):
            raise ValueError("must be a lower-case identifier (letters, digits, _; starts with a letter)")
        return v


class GatewaySettings(_Section):
    batch_size: int = Field(default=5000, ge=1, le=100_000, description="max readings per COPY")
    flush_interval_s: float = Field(default=0.05, gt=0, le=60, description="max age of a batch before it is written")
    queue_max: int = Field(default=50_000, ge=100, le=5_000_000, description="bounded in-memory queue")
    max_payload_bytes: int = Field(default=16_384, ge=256, le=1_048_576)
    max_fields: int = Field(default=64, ge=1, le=1024)
    max_future_s: float = Field(default=300.0, ge=0, description="reject timestamps further ahead")
    rollup_interval_s: float = Field(default=30.0, gt=0, le=3600, description="plain PG: rollup refresh")
    metrics_port: int | None = Field(default=None, ge=0, le=65535, description="Prometheus /metrics port")
    spool_max_bytes: int = Field(default=1 << 30, ge=1 << 20, description="on-disk spool limit while the DB is down")


class ClusterSettings(_Section):
    """N gateways share the communities through leases in the database (docs/scale-out.md)."""

    enabled: bool = Field(default=False, description="share communities with other gateways through leases; "
                                                      "off = this gateway runs every community")
    node_id: str = Field(default="", description="this gateway's name in the lease table; empty = {host}-{pid}")
    lease_s: float = Field(default=10.0, ge=1.0, le=600.0, description="a community's lease lasts this long "
                                                                      "unless renewed (the takeover time)")
    renew_s: float = Field(default=2.0, gt=0, le=60.0, description="how often leases are renewed")

    @model_validator(mode="after")
    def _renew_within_lease(self) -> ClusterSettings:
        if self.renew_s * 3 > self.lease_s:
            raise ValueError("renew_s must be at most a third of lease_s (two renewals may fail before expiry)")
        return self


class RulesSettings(_Section):
    files: list[Path] = Field(default=[], description="site rule files merged over the shipped defaults, in order")


class KnowledgeSettings(_Section):
    dirs: list[Path] = Field(default=[], description="local knowledge directories (*.yaml, as twin/knowledge_base): "
                                                     "loaded after the shipped ones, an entry's id replaces a "
                                                     "shipped one or adds a new one (docs/assistant.md)")


class DemoSettings(_Section):
    http_port: int = Field(default=8050, ge=1, le=65535, description="dashboard port")
    community_file: Path | None = Field(default=None, description="community YAML; unset = bundled sample")


class LifeSafetyTarget(_Section):
    """A site's own targets for one life-safety alarm rule (minutes), replacing the incident policy's."""

    respond_min: float = Field(gt=0, le=1440)
    arrive_min: float | None = Field(default=None, gt=0, le=100_000)
    release_min: float | None = Field(default=None, gt=0, le=100_000)
    resolve_min: float | None = Field(default=None, gt=0, le=100_000)
    source: str = ""


class TicketSettings(_Section):
    """Dispatch tickets (issue 7): SLA clocks per class (seed 3.3), life-safety targets, assignment."""

    enabled: bool = Field(default=True, description="the gateway opens tickets from dispatching alarms")
    urgent_respond_h: float = Field(default=2.0, gt=0, le=720, description="urgent: accept within (seed 3.3)")
    urgent_resolve_h: float = Field(default=24.0, gt=0, le=8760, description="urgent: resolve within (seed 3.3)")
    general_respond_h: float = Field(default=24.0, gt=0, le=720, description="general: accept within (seed 3.3)")
    general_resolve_h: float = Field(default=72.0, gt=0, le=8760, description="general: resolve within (seed 3.3)")
    complex_respond_h: float = Field(default=24.0, gt=0, le=720,
                                     description="complex: accept and hand in the plan within (seed 3.3)")
    complex_progress_h: float = Field(default=72.0, gt=0, le=8760,
                                      description="complex: progress feedback at least this often")
    incident_files: list[Path] = Field(
        default=[], description="site incident policy files merged over twin/incidents_defaults.yaml (groups, "
                                "life-safety rules and their targets with sources), in order")
    life_safety: dict[str, LifeSafetyTarget] = Field(
        default={},
        description="rule id -> {respond_min, arrive_min, release_min, resolve_min, source}: replaces the "
                    "incident policy's target of that rule (shipped targets and sources: twin/incidents_defaults.yaml)",
    )
    warn_fraction: float = Field(default=0.75, gt=0, lt=1, description="warn the assignee at this share of a deadline")
    correlate_min: float = Field(default=30.0, ge=0, le=1440,
                                 description="an alarm no incident group takes joins an open ticket of its subject "
                                             "seen this recently (groups have their own window)")
    utc_offset: str = Field(default="+08:00", pattern=r"^[+-]\d{2}:\d{2}$",
                            description="community local time for duty hours (China Standard Time)")
    watchdog_interval_s: float = Field(default=30.0, gt=0, le=3600, description="how often the SLA watchdog runs")
    snapshots: bool = Field(default=True, description="the watchdog renders a 3D snapshot of each new ticket's spot "
                                                      "(pyvista offscreen, about 1 s of CPU a ticket)")
    photo_max_bytes: int = Field(default=5 << 20, ge=1024, le=50 << 20, description="largest feedback photo")
    partners: dict[str, str] = Field(
        default={"elevator": "电梯维保单位", "gas": "燃气公司", "fire": "消防控制室"},
        description="ticket category -> collaborating partner recorded on the ticket",
    )


NOTIFY_EVENTS = ("created", "reassigned", "priority_raised", "escalated", "sla_warning")


class WebhookSettings(_Section):
    """One HTTP webhook the notifier posts ticket messages to (gateway/notify/)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="names the channel in logs and metrics")
    url: str = Field(pattern=r"^https?://[^\s]+$", max_length=2000, description="where to POST")
    format: Literal["json", "wecom", "dingtalk"] = Field(
        default="json", description="json: the ticket message, signed; wecom / dingtalk: a group robot's text")
    secret: str | None = Field(default=None, min_length=8, max_length=256,
                               description="json: HMAC-SHA256 key of X-Gridtwin-Signature; dingtalk: the robot's "
                                           "signing secret")
    events: list[str] = Field(default=list(NOTIFY_EVENTS), description="ticket events sent (empty: every event)")
    priorities: list[Literal["urgent", "general", "complex"]] = Field(
        default=[], description="only tickets of these priorities (empty: all)")
    grids: list[str] = Field(default=[], description="only tickets of these grids (empty: all)")
    timeout_s: float = Field(default=5.0, gt=0, le=60, description="one attempt's time limit")
    attempts: int = Field(default=6, ge=1, le=20, description="tries per message, backing off 1, 2, 4 ... 60 s")


class NotifySettings(_Section):
    """Notifications beyond the worker's MQTT topic (issue 15): webhooks for WeCom/DingTalk robots or an SMS
    gateway. The notifier runs in the gateway when at least one is configured."""

    webhooks: list[WebhookSettings] = Field(default=[], description="the channels (in GRIDTWIN_CONFIG, or JSON "
                                                                    "in GRIDTWIN_NOTIFY_WEBHOOKS)")
    web_push: bool = Field(default=True, description="Web Push to the phones of workers who turned it on")
    push_contact: str = Field(default="mailto:gridtwin@localhost", pattern=r"^(mailto:|https://)[^\s]+$",
                              description="the VAPID contact push services may reach the operator at")
    push_allow_http: bool = Field(default=False, description="accept http:// push endpoints on this machine "
                                                              "(tests and development only)")

    @model_validator(mode="after")
    def _unique_names(self) -> NotifySettings:
        names = [w.name for w in self.webhooks]
        if len(names) != len(set(names)):
            raise ValueError(f"webhook names must be unique: {names}")
        return self


class ApiSettings(_Section):
    """The REST API under /api/v1 (issue 7)."""

    token_ttl_min: float = Field(default=720.0, gt=0, le=43_200, description="login tokens expire after")
    public_url: str = Field(default="http://127.0.0.1:8050", pattern=r"^https?://[^\s]+$",
                            description="base URL residents reach (for the rating link)")


class Settings(BaseSettings):
    """Root settings. Build with :func:`load`, not directly, to get file and env handling."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="_",
        env_nested_max_split=1,
        extra="forbid",
        frozen=True,
        populate_by_name=True,
    )

    data_dir: Path = Field(default=Path(".gridtwin"), description="embedded services, spool, artifacts")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    mqtt: MqttSettings = MqttSettings()
    db: DbSettings = DbSettings()
    gateway: GatewaySettings = GatewaySettings()
    rules: RulesSettings = RulesSettings()
    knowledge: KnowledgeSettings = KnowledgeSettings()
    cluster: ClusterSettings = ClusterSettings()
    demo: DemoSettings = DemoSettings()
    tickets: TicketSettings = TicketSettings()
    api: ApiSettings = ApiSettings()
    notify: NotifySettings = NotifySettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The YAML file arrives through init kwargs (merged by load()); env wins over it. The environment is
        # the mapping load() was given (per thread and task, never written to os.environ), else os.environ.
        environ = _ENVIRON.get()
        if environ is None:
            return (env_settings, init_settings)
        return (_MappingEnvSource(settings_cls, environ), init_settings)

    @model_validator(mode="before")
    @classmethod
    def _default_client_id(cls, data: Any) -> Any:
        """An empty ``mqtt.client_id`` becomes this data directory's own id (see :func:`default_client_id`)."""
        if not isinstance(data, dict):
            return data
        mqtt = data.get("mqtt")
        if isinstance(mqtt, MqttSettings):
            if mqtt.client_id:
                return data
            mqtt = mqtt.model_dump()
        elif mqtt is None:
            mqtt = {}
        elif not isinstance(mqtt, dict) or mqtt.get("client_id"):
            return data
        data_dir = data.get("data_dir", cls.model_fields["data_dir"].default)
        if not isinstance(data_dir, (str, Path)):
            return data  # the field's own validation explains it
        return {**data, "mqtt": {**mqtt, "client_id": default_client_id(Path(data_dir))}}


# The environment load() reads, for the settings source below: a ContextVar, so threads (and tasks) loading
# settings from different mappings at once each see their own, and os.environ is never touched.
_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("gridtwin_settings_environ", default=None)


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping instead of os.environ."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)


CLIENT_ID_FILE = "mqtt-client-id"
LEGACY_CLIENT_ID = "gridtwin-gateway"  # the fixed default of earlier versions


def default_client_id(data_dir: Path) -> str:
    """The gateway's MQTT client id when none is set: ``gridtwin-{host}-{8 random hex}``, made once and kept in
    ``{data_dir}/mqtt-client-id``, so it survives restarts (the persistent session and the spool are keyed by it)
    and two gateways get different ids unless they share a data directory (which they must not: the spool).
    A data directory with a spool or start-up cache of the earlier fixed default ``gridtwin-gateway`` keeps that
    id. An unwritable data directory gets ``gridtwin-{host}-{pid}`` (a new session at every start)."""
    path = data_dir.expanduser() / CLIENT_ID_FILE
    with contextlib.suppress(OSError, UnicodeDecodeError):
        kept = path.read_text(encoding="utf-8").strip()
        if kept:
            return kept
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname().split(".")[0])[:40] or "host"
    new = f"gridtwin-{host}-{secrets.token_hex(4)}"
    root = data_dir.expanduser()
    if (root / "spool" / LEGACY_CLIENT_ID).exists() or (root / "cache" / f"{LEGACY_CLIENT_ID}.json").exists():
        new = LEGACY_CLIENT_ID  # state of a gateway from before this default: keep its session, spool and cache
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:  # another process made it first: use theirs
        with contextlib.suppress(OSError, UnicodeDecodeError):
            kept = path.read_text(encoding="utf-8").strip()
            if kept:
                return kept
        return new
    except OSError:
        return f"gridtwin-{host}-{os.getpid()}"
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(new + "\n")
    return new


class SettingsError(Exception):
    """Bad settings: carries one human line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class _Origin:
    """Where a settings key came from, for error messages."""

    where: str


def _known_env_names() -> set[str]:
    names = {f"{ENV_PREFIX}CONFIG"}
    for name, field in Settings.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            for sub, subfield in ann.model_fields.items():
                names.add(f"{ENV_PREFIX}{name}_{sub}".upper())
                if subfield.alias:
                    names.add(f"{ENV_PREFIX}{name}_{subfield.alias}".upper())
        else:
            names.add(f"{ENV_PREFIX}{name}".upper())
    return names


def _yaml_with_lines(text: str, path: Path) -> tuple[dict[str, Any], dict[tuple[str, ...], int]]:
    """Parse YAML and remember the line of every mapping key (1-based)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SettingsError([f"{path}: not valid YAML: {exc}"]) from exc
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise SettingsError([f"{path}: top level must be a mapping of settings, got {type(data).__name__}"])
    lines: dict[tuple[str, ...], int] = {}

    def walk(n: yaml.Node, prefix: tuple[str, ...]) -> None:
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                key = (*prefix, str(k.value))
                lines[key] = k.start_mark.line + 1
                walk(v, key)

    if node is not None:
        walk(node, ())
    return data, lines


def load(
    config_file: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build the settings from file, environment and overrides; raise SettingsError listing every problem."""
    environ = dict(os.environ if env is None else env)
    problems: list[str] = []
    unknown_env = sorted(k for k in environ if k.startswith(ENV_PREFIX) and k not in _known_env_names())
    problems += [f"environment {k}: unknown setting (see `gridtwin config show` for the keys)" for k in unknown_env]

    file_data: dict[str, Any] = {}
    lines: dict[tuple[str, ...], int] = {}
    path_str = config_file or environ.get(f"{ENV_PREFIX}CONFIG")
    path: Path | None = Path(path_str) if path_str else None
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise SettingsError([f"config file {path}: cannot read it ({exc.strerror})"]) from exc
        file_data, lines = _yaml_with_lines(text, path)

    merged = _deep_merge(file_data, overrides)
    if problems:
        raise SettingsError(problems)
    # The settings source reads exactly these variables (see Settings.settings_customise_sources).
    token = _ENVIRON.set({k: v for k, v in environ.items() if k.startswith(ENV_PREFIX) and k != f"{ENV_PREFIX}CONFIG"})
    try:
        return Settings(**merged)
    except ValidationError as exc:
        raise SettingsError(_explain(exc, path, lines, environ)) from exc
    except PydanticSettingsError as exc:  # a list or table in the environment that is not JSON
        section = str(exc).split('"')[1] if str(exc).count('"') >= 2 else ""
        names = sorted(k for k in environ if k.startswith(f"{ENV_PREFIX}{section}_".upper()))
        raise SettingsError([f"environment {' / '.join(names) or section}: not valid JSON; lists and tables are "
                             f"JSON, e.g. {ENV_PREFIX}KNOWLEDGE_DIRS='[\"/etc/gridtwin/knowledge\"]'"]) from None
    finally:
        _ENVIRON.reset(token)


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _explain(
    exc: ValidationError, path: Path | None, lines: dict[tuple[str, ...], int], environ: Mapping[str, str]
) -> list[str]:
    out = []
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        dotted = ".".join(loc) or "(root)"
        env_name = f"{ENV_PREFIX}{'_'.join(loc)}".upper()
        if env_name in environ:
            where = f"environment {env_name}"
        elif path is not None and loc in lines:
            where = f"{path}:{lines[loc]}"
        elif path is not None:
            where = str(path)
        else:
            where = "settings"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown setting"
        value = err.get("input")
        shown = "" if err["type"] == "extra_forbidden" or isinstance(value, dict) else f" (got {value!r})"
        out.append(f"{where}: {dotted}: {msg}{shown}")
    return out


def describe() -> list[tuple[str, str, str]]:
    """(env name, default, description) for every setting, for `gridtwin config show` and the README."""
    rows = []
    for name, field in Settings.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            for sub, subfield in ann.model_fields.items():
                key = subfield.alias or sub
                rows.append(
                    (f"{ENV_PREFIX}{name}_{key}".upper(), repr(subfield.default), subfield.description or "")
                )
        else:
            rows.append((f"{ENV_PREFIX}{name}".upper(), repr(field.default), field.description or ""))
    return rows
