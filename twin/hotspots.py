"""Hotspots: where incidents pile up, from device alarms and one-click reports, and a hint at the cause. Pure.

The input is :class:`IncidentGroup` rows: incidents counted by source (``sensor``: a raised alarm, ``report``:
a one-click report by a worker or a resident), place (building, floor), category (the alarm's rule id or the
report's category id), local hour of day and device, with how many of the alarms were closed or cancelled as
false alarms. :func:`rank` turns them into :class:`Hotspot` places, worst first, each with the hints the
rules below find in its own data (:func:`hints`); :func:`by_hour` and :func:`by_building` break them down by
category.

Hint rules (all thresholds below; a place can get several, most specific first):

``false_alarms``  at least ``FALSE_MIN`` of its alarms closed as false and at least ``FALSE_SHARE`` of them:
                  service the device or adjust its sensitivity
``one_device``    at least ``DEVICE_MIN`` alarms and one device raised at least ``DEVICE_SHARE`` of them:
                  inspect that device
``repeat``        one category at least ``REPEAT_MIN`` times and at least ``REPEAT_SHARE`` of the place's
                  incidents: tackle the source (reports: property management / enforcement; alarms: wiring,
                  pipes, where the device sits); not for an alarm category when ``one_device`` already names
                  the device behind it
``night``         at least ``NIGHT_MIN`` incidents and at least ``NIGHT_SHARE`` of them between 22:00 and
                  06:00 local time (a third of the day): mostly alarms: check what the devices see at night;
                  otherwise patrol there at night
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

Source = Literal["sensor", "report"]
SOURCES: tuple[Source, ...] = ("sensor", "report")
Place = tuple[str | None, int | None]  # (building, floor); None: not known (a building-wide alarm has no floor)

REPEAT_MIN, REPEAT_SHARE = 3, 0.5
FALSE_MIN, FALSE_SHARE = 3, 0.5
NIGHT_MIN, NIGHT_SHARE = 4, 0.6
DEVICE_MIN, DEVICE_SHARE = 4, 0.6
NIGHT_HOURS = frozenset({22, 23, 0, 1, 2, 3, 4, 5})
BUCKET_HOURS = 3  # hour-of-day columns of the category x time-of-day breakdown: 00-03, 03-06, ... 21-24
PERIODS = (7, 30, 90)  # days a page offers


@dataclass(frozen=True, slots=True)
class IncidentGroup:
    """``count`` incidents of one source at one place, of one category, in one local hour of day, from one
    device (alarms; None for reports and alarms without a device); ``false_alarms`` of them were closed or
    cancelled as false alarms."""

    source: Source
    building: str | None
    floor: int | None
    category: str
    hour: int  # 0..23, the community's local time
    count: int
    device: str | None = None
    false_alarms: int = 0


@dataclass(frozen=True, slots=True)
class Hint:
    """One rule's finding at a place: ``code`` (see the module doc), the numbers it rests on, its text."""

    code: Literal["false_alarms", "one_device", "repeat", "night"]
    n: int  # incidents the finding is about (false alarms, the device's alarms, the category's, night ones)
    of: int  # out of
    zh: str
    en: str
    subject: str | None = None  # the category id (repeat) or device id (one_device, false_alarms of one device)

    def text(self, lang: str) -> str:
        return self.en if lang == "en" else self.zh


@dataclass(frozen=True, slots=True)
class Hotspot:
    """Incidents at one place (building, floor) over a period: sensor alarms plus reports.

    ``top_category``: the most frequent category id (rule id or report category id), ``top_label`` its
    display name ``中文 / English``; ``hint``: the hints' Chinese text joined (empty when no rule fired),
    ``hint_en`` the same in English, ``hints`` each finding."""

    building: str | None
    floor: int | None
    count: int
    sensor: int
    reports: int
    top_category: str | None
    hint: str
    hint_en: str = ""
    hints: tuple[Hint, ...] = ()
    top_label: str = ""
    top_count: int = 0
    false_alarms: int = 0
    night: int = 0
    device: str | None = None  # the device behind most of the place's alarms, if one is
    categories: tuple[tuple[str, int], ...] = field(default=())  # (category id, incidents), most first

    def as_dict(self) -> dict[str, object]:
        return {"building": self.building, "floor": self.floor, "count": self.count, "sensor": self.sensor,
                "reports": self.reports, "top_category": self.top_category, "top_label": self.top_label,
                "top_count": self.top_count, "false_alarms": self.false_alarms, "night": self.night,
                "device": self.device, "hint": self.hint, "hint_en": self.hint_en,
                "hints": [{"code": h.code, "n": h.n, "of": h.of, "subject": h.subject, "zh": h.zh, "en": h.en}
                          for h in self.hints],
                "categories": [{"category": c, "count": n} for c, n in self.categories]}


Labeller = Callable[[str], str]  # category id -> "中文 / English" (or the id when unknown)


@dataclass(frozen=True, slots=True)
class HotspotData:
    """A period's incident groups and the display names of their categories (id -> ``中文 / English``)."""

    groups: tuple[IncidentGroup, ...]
    labels: Mapping[str, str]


def _half(name: str, lang: str) -> str:
    if " / " in name:
        zh, en = name.split(" / ", 1)
        return en.strip() if lang == "en" else zh.strip()
    return name


def hints(groups: Sequence[IncidentGroup], label: Labeller = str) -> tuple[Hint, ...]:
    """What the incidents of one place suggest (the rules of the module doc), most specific first."""
    total = sum(g.count for g in groups)
    sensor = [g for g in groups if g.source == "sensor"]
    alarms = sum(g.count for g in sensor)
    out: list[Hint] = []
    devices: Counter[str] = Counter()
    for g in sensor:
        if g.device:
            devices[g.device] += g.count
    top_device, top_device_n = devices.most_common(1)[0] if devices else (None, 0)
    false = sum(g.false_alarms for g in sensor)
    if false >= FALSE_MIN and alarms and false / alarms >= FALSE_SHARE:
        out.append(Hint("false_alarms", false, alarms,
                        f"{false}/{alarms} 次告警被判为误报：建议检修设备或调整灵敏度",
                        f"{false} of {alarms} alarms closed as false: service the device or adjust its sensitivity"))
    if top_device is not None and alarms >= DEVICE_MIN and top_device_n / alarms >= DEVICE_SHARE:
        out.append(Hint("one_device", top_device_n, alarms,
                        f"设备 {top_device} 产生 {top_device_n}/{alarms} 次告警：建议现场检查该设备",
                        f"device {top_device} raised {top_device_n} of {alarms} alarms: inspect it on site",
                        top_device))
    cats: Counter[tuple[Source, str]] = Counter()
    for g in groups:
        cats[(g.source, g.category)] += g.count
    if cats:
        (src, cat), n = max(cats.items(), key=lambda kv: (kv[1], kv[0][0] == "report", kv[0][1]))
        covered = src == "sensor" and any(h.code == "one_device" for h in out)  # that device is the hint
        if n >= REPEAT_MIN and n / total >= REPEAT_SHARE and not covered:
            name = label(cat)
            if src == "report":
                zh = f"{_half(name, 'zh')}反复发生 {n} 次：建议源头治理（物业/执法）"
                en = f"{_half(name, 'en')} reported {n} times: tackle the source (property management / enforcement)"
            else:
                zh = f"{_half(name, 'zh')}反复告警 {n} 次：建议排查根源（线路、管道、设备安装位置）"
                en = f"{_half(name, 'en')} alarmed {n} times: look for the root cause (wiring, pipes, device placement)"
            out.append(Hint("repeat", n, total, zh, en, cat))
    night = sum(g.count for g in groups if g.hour in NIGHT_HOURS)
    if total >= NIGHT_MIN and night / total >= NIGHT_SHARE:
        if alarms * 2 > total:  # mostly alarms: what the devices see at night
            zh, en = "建议核查设备夜间工况", "check what the devices see at night"
        else:
            zh, en = "建议加强夜间巡查", "patrol there at night"
        out.append(Hint("night", night, total, f"{night}/{total} 次发生在夜间（22:00–6:00）：{zh}",
                        f"{night} of {total} at night (22:00–06:00): {en}"))
    return tuple(out)


def place_of(g: IncidentGroup) -> Place:
    return (g.building, g.floor)


def rank(groups: Iterable[IncidentGroup], label: Labeller = str, *, top: int | None = None) -> list[Hotspot]:
    """Places by incidents, worst first (ties: more reports first, then by building and floor)."""
    by_place: dict[Place, list[IncidentGroup]] = {}
    for g in groups:
        if g.count > 0:
            by_place.setdefault(place_of(g), []).append(g)
    out = []
    for (building, floor), gs in by_place.items():
        cats: Counter[str] = Counter()
        devices: Counter[str] = Counter()
        for g in gs:
            cats[g.category] += g.count
            if g.device and g.source == "sensor":
                devices[g.device] += g.count
        sensor = sum(g.count for g in gs if g.source == "sensor")
        reports = sum(g.count for g in gs if g.source == "report")
        top_cat, top_n = cats.most_common(1)[0]
        found = hints(gs, label)
        dev = next((h.subject for h in found if h.code == "one_device"), None)
        out.append(Hotspot(
            building, floor, sensor + reports, sensor, reports, top_cat,
            "；".join(h.zh for h in found), "; ".join(h.en for h in found), found, label(top_cat), top_n,
            sum(g.false_alarms for g in gs if g.source == "sensor"),
            sum(g.count for g in gs if g.hour in NIGHT_HOURS), dev, tuple(cats.most_common())))
    out.sort(key=lambda h: (-h.count, -h.reports, h.building or "", -1 if h.floor is None else h.floor))
    return out[:top] if top is not None else out


def only_building(groups: Iterable[IncidentGroup], building: str | None) -> list[IncidentGroup]:
    """The groups of one building (all when ``building`` is None)."""
    return [g for g in groups if building is None or g.building == building]


def per_building(hotspots: Iterable[Hotspot]) -> list[tuple[str | None, int, int, int]]:
    """(building, incidents, sensor, reports) per building, most first."""
    acc: dict[str | None, list[int]] = {}
    for h in hotspots:
        a = acc.setdefault(h.building, [0, 0, 0])
        a[0] += h.count
        a[1] += h.sensor
        a[2] += h.reports
    return sorted(((b, *v) for b, v in acc.items()), key=lambda r: (-r[1], r[0] or ""))  # type: ignore[misc]


def buckets() -> list[tuple[int, int]]:
    """Hour-of-day columns: [(0, 3), (3, 6), ... (21, 24)]."""
    return [(h, h + BUCKET_HOURS) for h in range(0, 24, BUCKET_HOURS)]


def by_hour(groups: Iterable[IncidentGroup]) -> dict[tuple[Source, str], list[int]]:
    """(source, category) -> incidents per hour-of-day bucket (:func:`buckets`), categories most first."""
    acc: dict[tuple[Source, str], list[int]] = {}
    for g in groups:
        row = acc.setdefault((g.source, g.category), [0] * (24 // BUCKET_HOURS))
        row[(g.hour % 24) // BUCKET_HOURS] += g.count
    return dict(sorted(acc.items(), key=lambda kv: (-sum(kv[1]), kv[0])))


def by_building(groups: Iterable[IncidentGroup]) -> dict[tuple[Source, str], Counter[str | None]]:
    """(source, category) -> incidents per building, categories most first."""
    acc: dict[tuple[Source, str], Counter[str | None]] = {}
    for g in groups:
        acc.setdefault((g.source, g.category), Counter())[g.building] += g.count
    return dict(sorted(acc.items(), key=lambda kv: (-sum(kv[1].values()), kv[0])))


def floor_counts(hotspots: Iterable[Hotspot]) -> dict[tuple[str, int], Hotspot]:
    """The hotspots on a known floor of a building, by (building, floor) (what the 3D heat map colours)."""
    return {(h.building, h.floor): h for h in hotspots if h.building is not None and h.floor is not None}


def building_counts(hotspots: Iterable[Hotspot]) -> Mapping[str, int]:
    """Incidents per building, floors and building-wide ones together."""
    acc: Counter[str] = Counter()
    for h in hotspots:
        if h.building is not None:
            acc[h.building] += h.count
    return acc
