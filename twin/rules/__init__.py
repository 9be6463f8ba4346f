"""Alarm rules as data and the engine that evaluates them. Pure: parses text given to it, no I/O, and the
engine never reads a clock.

Modules: :mod:`~twin.rules.schema` (rule types, durations, :class:`RuleSet`), :mod:`~twin.rules.loader`
(:func:`load_rules`: merge and validate rule files), :mod:`~twin.rules.evaluators` (one module per rule
family), :mod:`~twin.rules.components` (fire panel events placed at their components),
:mod:`~twin.rules.engine` (:class:`Engine`) and :mod:`~twin.rules.replay` (:func:`replay`). The
engine's benchmark is ``benchmarks/rules.py``.

Rules are YAML (``version: 1`` and a list ``rules``); the shipped defaults (``twin/rules_defaults.yaml``,
:data:`DEFAULTS_FILE`, read by the caller) come first, site files after; a later rule with the same
``id`` overrides only the keys it gives (``enabled: false`` switches a rule off; a different
``type`` replaces the rule). :func:`load_rules` validates everything (shapes with pydantic, then
kinds, fields, units, event codes, thresholds, durations and references against the catalogue and the
community) and raises :class:`RulesError` naming ``file:line: rules.<id>.<key>: message`` for every
problem, so a bad file never replaces a rule set in force. :class:`RuleSet` is immutable.

Rule types (all: ``id``, ``type``, ``severity``, ``dispatch``; optional ``name``, ``source``,
``enabled``, ``escalate: {every, max}``, ``flapping: {cycles, within, settle}`` or ``null``)::

    threshold        kind, field, [unit], direction high|low, raise, clear, [for]   hysteresis (+ pending)
                     [at: most_unfavourable_point]: pipe pressure judged at the riser top (reading less
                     the static head above the sensor, from its floor in the community)
    duration         kind, field, [unit], equals|above|below, for                   condition true for T
    rate             kind, field, [unit], direction rising|falling, raise, [clear], [window], [min_span]
                     (units per minute)
    dose             kind, field, [unit], baseline, dose, [clear], [hold]       time-weighted exposure
                     (excess over baseline x minutes, on the engine's clock: a home CO alarm's curve)
    no_data          kind, [after] (default 2 catalogue heartbeats), [offline_for]
    count            kind, event, count, within                                     N events in T
    state            kind, event (code or list)                                     active raises, cleared clears
    correlation      scope device|floor|building, min_devices, within, signals [{kind, event} | {rule}]
    care_inactivity  after, [window ["07:00", "21:00"]], [utc_offset "+08:00"], activity [{kind, field|event}]
    drop_from_normal kind, field, [unit], drop|drop_pct, [for], [learn], [warmup], [min_samples]
                     below the device's own normal, learned on the engine's clock
    pump_cycling     kind, event | field [rise], starts, within                     N pump starts in T (engine clock)

A fire panel's event whose detail names ``component <loop>-<address>`` is placed at that component (the
panel's address table in the community); unknown addresses alarm at the panel.

Device rules also take ``buildings`` / ``devices`` filters and ``suppressed_by`` (event codes that
mute the rule while active on the device; default: ``shielded`` for detectors and call points,
``maintenance_mode`` for elevators). Durations are text: ``30s``, ``5m``, ``2h``, ``1d`` (or ``1h30m``).

:class:`Engine` evaluates a rule set against facts with the timestamps they carry (simulated time
works): ``on_reading``, ``on_event``, ``on_status``, ``tick(now)``; each returns the
:class:`~twin.alarms.AlarmEvent` list it caused. Rule state is keyed by subject and survives a
restart through :meth:`Engine.snapshot` / :meth:`Engine.restore` (also the way to hot-reload rules).

Two clocks (docs/alarms.md). A fact carries its *device time* ``ts`` and may carry ``received``: the
engine's clock when it arrived (the gateway passes its event clock, never ahead of server time; without
it the device time is used, as in an offline replay). Silence (no-data), correlation windows, care
inactivity, doses (``dose``: exposure counts from receipt) and the alarm lifecycle (raised_at, escalation,
flapping, shelving) run on the engine's clock, so no device clock can make another device look silent or
age an alarm. A device's own durations, rates and count windows run on its own clock (its readings are
consistent with each other), and a timer
started by one of them is checked against the engine's clock plus that device's offset (``skew``, from
its newest message). Alarms raised by a fact are raised at its ``received`` time; ``occurred_at`` on the
event keeps the device time. A fact older than the device's newest is *late*: level thresholds (without
``for``) still raise on it, saying so; durations, rates and state rules ignore it; count rules count it.
"""

from twin.alarms import AlarmError
from twin.rules.engine import Engine
from twin.rules.evaluators.base import SUPPRESSING_CODES
from twin.rules.loader import DEFAULTS_FILE, load_rules
from twin.rules.replay import replay
from twin.rules.schema import (
    Activity,
    CareInactivityRule,
    CorrelationRule,
    CountRule,
    DeviceRule,
    DoseRule,
    DropFromNormalRule,
    Duration,
    DurationRule,
    Escalate,
    Flapping,
    NoDataRule,
    PumpCyclingRule,
    RateRule,
    Rule,
    RulesError,
    RuleSet,
    Signal,
    StateRule,
    ThresholdRule,
    parse_duration,
)

__all__ = [
    "DEFAULTS_FILE",
    "SUPPRESSING_CODES",
    "Activity",
    "AlarmError",
    "CareInactivityRule",
    "CorrelationRule",
    "CountRule",
    "DeviceRule",
    "DoseRule",
    "DropFromNormalRule",
    "Duration",
    "DurationRule",
    "Engine",
    "Escalate",
    "Flapping",
    "NoDataRule",
    "PumpCyclingRule",
    "RateRule",
    "Rule",
    "RuleSet",
    "RulesError",
    "Signal",
    "StateRule",
    "ThresholdRule",
    "load_rules",
    "parse_duration",
    "replay",
]
