"""Device catalogue: every device kind, its telemetry fields, event codes and heartbeat. Pure data.

Numbers carry their source beside them. Where a value is a site choice rather than a standard it
says so; every threshold used for alarms lives in the rules, not here. Here: the physically valid
range (outside it a reading is rejected as a device error) and the normal operating range (outside
it the twin shows the field as abnormal).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

OFFLINE_AFTER_HEARTBEATS = 2  # default: a device is offline after missing this many heartbeat periods
# Fire facilities: GB 50440-2007 (urban fire remote monitoring, ch. 3 performance indicators) sets a link check
# (巡检) period of at most 2 h between the monitoring centre and each site, so a silent fire device must be
# noticed within 2 h. It reports every 30 min and counts as offline after 2 missed reports plus 5 min for
# network delay and clock jitter: 65 min.
FIRE_HEARTBEAT_S = 1800
FIRE_OFFLINE_S = 2 * FIRE_HEARTBEAT_S + 300
FIRE_CHECK = "GB 50440-2007 ch. 3: link check period <= 2 h; a report every 30 min fits twice in it (site choice)"
FIRE_SILENCE = "GB 50440-2007 ch. 3: silence noticed within 2 h: 2 missed 30-min reports + 5 min margin = 65 min"


class FieldType(StrEnum):
    FLOAT = "float"
    INT = "int"
    BOOL = "bool"


# What people call each telemetry field (Chinese, English); the unit is the field's own. A field name means the same
# quantity in every kind that has it (``pressure`` is a pipe or vessel pressure in MPa wherever it appears).
FIELD_LABELS: dict[str, tuple[str, str]] = {
    "mains_ok": ("主电正常", "mains power OK"),
    "battery_ok": ("备电正常", "backup battery OK"),
    "obscuration": ("烟雾减光率", "smoke obscuration"),
    "battery": ("电池电量", "battery"),
    "temperature": ("温度", "temperature"),
    "pressure": ("压力", "pressure"),
    "running": ("运行中", "running"),
    "outlet_pressure": ("出口压力", "outlet pressure"),
    "closed": ("已关闭", "closed"),
    "floor": ("所在楼层", "car floor"),
    "direction": ("运行方向", "direction"),
    "door_open": ("轿门打开", "car door open"),
    "load": ("载重", "load"),
    "in_service": ("正常服务", "in service"),
    "lel": ("可燃气体浓度", "combustible gas"),
    "co": ("一氧化碳浓度", "carbon monoxide"),
    "leak": ("漏水", "water leak"),
    "humidity": ("相对湿度", "relative humidity"),
    "level": ("液位", "water level"),
    "laeq": ("等效声级", "noise level (LAeq)"),
    "opened": ("门已打开", "door opened"),
    "flow": ("用水流量", "water flow"),
    "total": ("累计用水量", "total water used"),
}


@dataclass(frozen=True, slots=True)
class TelemetryField:
    name: str
    unit: str
    type: FieldType = FieldType.FLOAT
    valid: tuple[float, float] = (float("-inf"), float("inf"))
    normal: tuple[float, float] | None = None
    source: str = ""

    @property
    def label_zh(self) -> str:
        """What people call this field, in Chinese (:data:`FIELD_LABELS`; the raw name if it has none)."""
        return FIELD_LABELS.get(self.name, (self.name, self.name))[0]

    @property
    def label_en(self) -> str:
        return FIELD_LABELS.get(self.name, (self.name, self.name))[1]

    def check(self, value: bool | int | float) -> tuple[str, str] | None:
        """None if ``value`` is acceptable for this field, else (reason code, explanation)."""
        if self.type is FieldType.BOOL:
            return None if isinstance(value, bool) else ("bad_type", f"{self.name} must be true/false")
        if isinstance(value, bool):
            return "bad_type", f"{self.name} must be a number, not true/false"
        if self.type is FieldType.INT and not float(value).is_integer():
            return "bad_type", f"{self.name} must be a whole number"
        lo, hi = self.valid
        if not lo <= value <= hi:
            return "out_of_range", f"{self.name}={value} outside the valid range {lo:g}..{hi:g} {self.unit}".rstrip()
        return None


@dataclass(frozen=True, slots=True)
class EventCode:
    code: str
    label_zh: str
    label_en: str
    latching: bool = True  # has an active/cleared state (False: one-off pulse)
    source: str = ""


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """A command the server may send a device of this kind on its ``command`` channel (an interlock), and the
    one-off event the device answers with once it has carried the command out (its acknowledgement)."""

    name: str
    label_zh: str
    label_en: str
    ack_event: str
    source: str = ""


@dataclass(frozen=True, slots=True)
class DeviceKind:
    kind: str
    label_zh: str
    label_en: str
    category: str  # fire | elevator | environment | care | water
    fields: tuple[TelemetryField, ...] = ()
    events: tuple[EventCode, ...] = ()
    heartbeat_s: int = 300
    heartbeat_source: str = ""
    offline_after_s: int | None = None  # silent longer than this: offline (None: OFFLINE_AFTER_HEARTBEATS heartbeats)
    offline_source: str = ""
    commands: tuple[CommandSpec, ...] = ()  # what the server may tell it to do (interlocks)
    _by_name: dict[str, TelemetryField] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_name.update({f.name: f for f in self.fields})

    def field(self, name: str) -> TelemetryField | None:
        return self._by_name.get(name)

    @property
    def silence_s(self) -> int:
        """How long a device of this kind may stay silent before it counts as offline (live state, no-data rules)."""
        return self.offline_after_s if self.offline_after_s is not None else self.heartbeat_s * OFFLINE_AFTER_HEARTBEATS

    def event(self, code: str) -> EventCode | None:
        return next((e for e in self.events if e.code == code), None)

    def command(self, name: str) -> CommandSpec | None:
        return next((c for c in self.commands if c.name == name), None)


_FIRE_STATES = (
    EventCode("fire_alarm", "火警", "fire alarm", source="GB 26875.3 component states"),
    EventCode("fault", "故障", "fault", source="GB 26875.3"),
    EventCode("shielded", "屏蔽", "shielded/disabled", source="GB 26875.3"),
    EventCode("supervisory", "监管", "supervisory", source="GB 26875.3"),
)
_ELEVATOR_FAULTS = (
    EventCode("entrapment", "困人", "passenger entrapment", source="GB/T 24476-2017 fault types"),
    EventCode("door_open_moving", "运行中开门", "door open while moving", source="GB/T 24476-2017"),
    EventCode("overtravel_top", "冲顶", "over-travel at top", source="GB/T 24476-2017"),
    EventCode("overtravel_bottom", "蹲底", "over-travel at bottom", source="GB/T 24476-2017"),
    EventCode("overspeed", "超速", "over-speed", source="GB/T 24476-2017"),
    EventCode("stop_outside_door_zone", "门区外停梯", "stopped outside door zone", source="GB/T 24476-2017"),
    EventCode("power_failure", "停电", "power failure", source="GB/T 24476-2017"),
    EventCode("safety_circuit_break", "安全回路断路", "safety circuit broken", source="GB/T 24476-2017"),
    EventCode("maintenance_mode", "检修", "maintenance mode", source="GB/T 24476-2017 live data"),
)

KINDS: dict[str, DeviceKind] = {
    k.kind: k
    for k in (
        DeviceKind(
            "fire_panel", "火灾报警控制器", "fire alarm control panel", "fire",
            fields=(TelemetryField("mains_ok", "", FieldType.BOOL), TelemetryField("battery_ok", "", FieldType.BOOL)),
            events=(*_FIRE_STATES, EventCode("start", "启动", "linkage start"),
                    EventCode("feedback", "反馈", "linkage feedback")),
            heartbeat_s=FIRE_HEARTBEAT_S, heartbeat_source=FIRE_CHECK, offline_after_s=FIRE_OFFLINE_S,
            offline_source=FIRE_SILENCE,
        ),
        DeviceKind(
            "smoke_detector", "感烟探测器", "smoke detector", "fire",
            fields=(TelemetryField("obscuration", "%/m", valid=(0, 100), normal=(0, 2),
                                   source="GB 4715 point smoke detector response 0.5-4.5 %/m (site default)"),
                    TelemetryField("battery", "%", valid=(0, 100), normal=(20, 100))),
            events=_FIRE_STATES, heartbeat_s=FIRE_HEARTBEAT_S, heartbeat_source=FIRE_CHECK,
            offline_after_s=FIRE_OFFLINE_S, offline_source=FIRE_SILENCE,
        ),
        DeviceKind(
            "heat_detector", "感温探测器", "heat detector", "fire",
            fields=(TelemetryField("temperature", "°C", valid=(-40, 200), normal=(-10, 50),
                                   source="GB 4716 class A1 static response 54-65 °C"),),
            events=_FIRE_STATES, heartbeat_s=FIRE_HEARTBEAT_S, heartbeat_source=FIRE_CHECK,
            offline_after_s=FIRE_OFFLINE_S, offline_source=FIRE_SILENCE,
        ),
        DeviceKind(
            "manual_call_point", "手动报警按钮", "manual call point", "fire",
            events=_FIRE_STATES, heartbeat_s=FIRE_HEARTBEAT_S, heartbeat_source=FIRE_CHECK,
            offline_after_s=FIRE_OFFLINE_S, offline_source=FIRE_SILENCE,
        ),
        DeviceKind(
            "hydrant_pressure", "消火栓压力", "hydrant pipe pressure", "fire",
            fields=(TelemetryField("pressure", "MPa", valid=(0, 2.5), normal=(0.14, 1.0),
                                   source="GB 50974-2014 §7.4.12: hydrant outlet dynamic pressure >= 0.35 MPa "
                                          "(high-rise), static <= 1.0 MPa; 0.14 MPa low floor per site"),),
            events=(EventCode("fault", "故障", "fault"),), heartbeat_s=600,
            heartbeat_source="site default; GB 50440-2007 allows up to 2 h",
        ),
        DeviceKind(
            "sprinkler_pressure", "喷淋管网压力", "sprinkler pipe pressure", "fire",
            fields=(TelemetryField("pressure", "MPa", valid=(0, 2.5), normal=(0.1, 1.2),
                                   source="GB 50084-2017 §8.0.1: system working pressure <= 1.2 MPa; "
                                          "end-of-line >= 0.05 MPa (§5.0.2 area-dependent)"),),
            events=(EventCode("fault", "故障", "fault"), EventCode("flow", "水流指示", "water flow")),
            heartbeat_s=600, heartbeat_source="site default; GB 50440-2007 allows up to 2 h",
        ),
        DeviceKind(
            "fire_pump", "消防水泵", "fire pump", "fire",
            fields=(TelemetryField("running", "", FieldType.BOOL),
                    TelemetryField("outlet_pressure", "MPa", valid=(0, 3), normal=(0, 1.6))),
            events=(EventCode("fault", "故障", "fault"), EventCode("start", "启动", "start"),
                    EventCode("feedback", "反馈", "run feedback")),
            heartbeat_s=600, heartbeat_source="site default",
        ),
        DeviceKind(
            "jockey_pump", "稳压泵", "pressure-holding (jockey) pump", "fire",
            fields=(TelemetryField("running", "", FieldType.BOOL),),
            events=(EventCode("fault", "故障", "fault"),
                    EventCode("start", "启动", "start (active while running)",
                              source="GB 50974-2014 §5.3.4: the pressure tank is sized for <= 15 starts an hour")),
            heartbeat_s=600, heartbeat_source="site default; GB 50440-2007 allows up to 2 h",
        ),
        DeviceKind(
            "fire_door", "防火门", "fire door", "fire",
            fields=(TelemetryField("closed", "", FieldType.BOOL),),
            events=(EventCode("fault", "故障", "fault"), EventCode("held_open", "常闭门开启", "held open")),
            heartbeat_s=FIRE_HEARTBEAT_S, heartbeat_source=FIRE_CHECK, offline_after_s=FIRE_OFFLINE_S,
            offline_source=FIRE_SILENCE,
        ),
        DeviceKind(
            "emergency_light", "应急照明", "emergency lighting", "fire",
            fields=(TelemetryField("battery", "%", valid=(0, 100), normal=(60, 100),
                                   source="GB 51309-2018: battery duration >= 0.5 h (residential)"),),
            events=(EventCode("fault", "故障", "fault"),), heartbeat_s=FIRE_HEARTBEAT_S,
            heartbeat_source=FIRE_CHECK, offline_after_s=FIRE_OFFLINE_S, offline_source=FIRE_SILENCE,
        ),
        DeviceKind(
            "extinguisher", "灭火器", "extinguisher pressure", "fire",
            fields=(TelemetryField("pressure", "MPa", valid=(0, 3), normal=(1.2, 1.6),
                                   source="stored-pressure extinguisher gauge green band ~1.2-1.5 MPa (GB 4351)"),),
            heartbeat_s=FIRE_HEARTBEAT_S, heartbeat_source=FIRE_CHECK, offline_after_s=FIRE_OFFLINE_S,
            offline_source=FIRE_SILENCE,
        ),
        DeviceKind(
            "elevator", "电梯", "elevator", "elevator",
            fields=(TelemetryField("floor", "", FieldType.INT, valid=(-10, 200)),
                    TelemetryField("direction", "", FieldType.INT, valid=(-1, 1)),
                    TelemetryField("door_open", "", FieldType.BOOL),
                    TelemetryField("running", "", FieldType.BOOL),
                    TelemetryField("load", "%", valid=(0, 150), normal=(0, 100)),
                    TelemetryField("in_service", "", FieldType.BOOL)),
            events=_ELEVATOR_FAULTS, heartbeat_s=60, heartbeat_source="GB/T 24476-2017 (site default 60 s)",
        ),
        DeviceKind(
            "gas", "可燃气体探测器", "combustible gas detector", "environment",
            fields=(TelemetryField("lel", "%LEL", valid=(0, 100), normal=(0, 10),
                                   source="GB 50028-2006 §10.8.2: alarm concentration per CJ 3057 (household); "
                                          "GB 15322.2-2019 household detectors; rule gas_level1 at 25 %LEL"),),
            events=(EventCode("fault", "故障", "fault"),), heartbeat_s=600, heartbeat_source="site default",
        ),
        DeviceKind(
            "gas_valve", "燃气紧急切断阀", "gas emergency shut-off valve", "environment",
            fields=(TelemetryField("closed", "", FieldType.BOOL),),
            events=(EventCode("fault", "故障", "fault"),
                    EventCode("valve_closed", "已关阀", "valve closed", latching=False,
                              source="answer to the close command: the valve reached its closed end position")),
            commands=(CommandSpec("close", "关阀", "close the valve", "valve_closed",
                                  source="a residential gas alarm shuts the gas off (docs/alarms.md)"),),
            heartbeat_s=600, heartbeat_source="site default",
        ),
        DeviceKind(
            "exhaust_fan", "排风机", "exhaust fan", "environment",
            fields=(TelemetryField("running", "", FieldType.BOOL),),
            events=(EventCode("fault", "故障", "fault"),
                    EventCode("fan_started", "排风机已启动", "fan started", latching=False,
                              source="answer to the start command: the fan runs"),
                    EventCode("fan_stopped", "排风机已停止", "fan stopped", latching=False,
                              source="answer to the stop command")),
            commands=(CommandSpec("start", "启动排风", "start the fan", "fan_started",
                                  source="a residential gas alarm starts the exhaust fan (docs/alarms.md)"),
                      CommandSpec("stop", "停止排风", "stop the fan", "fan_stopped")),
            heartbeat_s=600, heartbeat_source="site default",
        ),
        DeviceKind(
            "co", "一氧化碳探测器", "CO detector", "environment",
            fields=(TelemetryField("co", "ppm", valid=(0, 2000), normal=(0, 30),
                                   source="GB/T 34004 / EN 50291-1 home CO alarm curve: 30 ppm never alarms; "
                                          "above it exposure builds up over time (rule co_alarm)"),),
            events=(EventCode("fault", "故障", "fault"),), heartbeat_s=600, heartbeat_source="site default",
        ),
        DeviceKind(
            "water_leak", "水浸探测器", "water leak", "environment",
            fields=(TelemetryField("leak", "", FieldType.BOOL),),
            heartbeat_s=3600, heartbeat_source="site default",
        ),
        DeviceKind(
            "temp_humidity", "温湿度", "temperature/humidity", "environment",
            fields=(TelemetryField("temperature", "°C", valid=(-40, 85), normal=(5, 35)),
                    TelemetryField("humidity", "%RH", valid=(0, 100), normal=(20, 85))),
            heartbeat_s=600, heartbeat_source="site default",
        ),
        DeviceKind(
            "water_tank", "水箱液位", "water-tank level", "water",
            fields=(TelemetryField("level", "m", valid=(0, 20), normal=(0.5, 10)),),
            heartbeat_s=600, heartbeat_source="site default",
        ),
        DeviceKind(
            "noise", "噪声", "noise", "environment",
            fields=(TelemetryField("laeq", "dB(A)", valid=(20, 140), normal=(20, 55),
                                   source="GB 3096-2008 class 1 (residential) 55 dB day / 45 dB night"),),
            heartbeat_s=600, heartbeat_source="site default",
        ),
        DeviceKind(
            "care_door", "门磁(关爱)", "care door contact", "care",
            fields=(TelemetryField("opened", "", FieldType.BOOL),),
            events=(EventCode("door_cycle", "开关门", "door cycle", latching=False),),
            heartbeat_s=3600, heartbeat_source="site default",
        ),
        DeviceKind(
            "care_water", "用水(关爱)", "care water flow", "care",
            fields=(TelemetryField("flow", "L/min", valid=(0, 100), normal=(0, 30)),
                    TelemetryField("total", "L", valid=(0, 1e9))),
            heartbeat_s=3600, heartbeat_source="site default",
        ),
    )
}


def kind(name: str) -> DeviceKind | None:
    return KINDS.get(name)


def all_metric_names() -> list[tuple[str, str]]:
    """Every distinct (field name, unit) pair across kinds, stable order, for the metric registry."""
    seen: dict[tuple[str, str], None] = {}
    for k in KINDS.values():
        for f in k.fields:
            seen.setdefault((f.name, f.unit), None)
    return list(seen)
