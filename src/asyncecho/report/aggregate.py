"""What the report says about a sweep's records, worked out once: counts
per outcome, latency percentiles and histogram bins, per-phase timings, the
failed targets grouped by outcome, the implementation inventory, and the
table's compact payload. Plain data: no HTML here (`report.charts` turns
numbers into chart geometry, the template draws both).

Records are `SweepRecord.as_dict()` rows (what `sweeps.output`'s reader
gives back from JSONL or CSV), one per target: merging shards is the
caller's (`asyncecho merge`'s rules). A row may also carry `tls_version`
(`echoscu --json` writes it); the TLS part of the inventory counts it when
present.

May import: `sweeps.records`, `sweeps.summary`, `protocol.uids` and the
standard library.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from asyncecho.protocol.uids import IMPLEMENTATION_CLASS_UID, uid_name
from asyncecho.sweeps.records import Target
from asyncecho.sweeps.summary import percentile

PHASES = ("connect", "associate", "echo", "release")

#: Failed targets named in each outcome's group (the table holds them all).
EXAMPLES_PER_OUTCOME = 20
#: Distinct details (the target's own address taken out) listed per outcome.
PATTERNS_PER_OUTCOME = 10

#: Implementation Class UID roots of DICOM stacks whose UIDs are published;
#: a peer's UID equal to one or under it names the stack. Only roots that
#: the stacks' own sources or documentation state.
STACK_ROOTS = (
    ("1.2.276.0.7230010.3", "DCMTK"),
    ("1.2.826.0.1.3680043.9.3811", "pynetdicom"),
    ("1.2.826.0.1.3680043.2.1143", "GDCM"),
    ("1.2.40.0.13.1", "dcm4che"),
    ("1.3.6.1.4.1.30071.8", "fo-dicom"),
    (IMPLEMENTATION_CLASS_UID, "asyncecho"),
)

#: The R10 preferred numbers: ten bins a decade, nearly even on a log scale,
#: with edges a person can read (1, 2, 5, 10 among them).
_R10 = (1.0, 1.25, 1.6, 2.0, 2.5, 3.15, 4.0, 5.0, 6.3, 8.0)

#: The table's columns, in the order of the payload's rows. Kinds: `text`
#: (plain), `pooled` (an index into the payload's strings: few distinct
#: values), `int`, `ms`, `status`, `offset` (ms after the first start).
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("host", "host", "text"),
    ("port", "port", "int"),
    ("called_aet", "called AE", "pooled"),
    ("outcome", "outcome", "pooled"),
    ("status", "status", "status"),
    ("total_ms", "total ms", "ms"),
    ("connect_ms", "connect", "ms"),
    ("associate_ms", "associate", "ms"),
    ("echo_ms", "echo", "ms"),
    ("release_ms", "release", "ms"),
    ("peer_aet", "peer AE", "pooled"),
    ("implementation_version_name", "version name", "pooled"),
    ("implementation_class_uid", "implementation class UID", "pooled"),
    ("transfer_syntax", "transfer syntax", "pooled"),
    ("tls_version", "TLS", "pooled"),
    ("started", "started (UTC)", "offset"),
    ("calling_aet", "calling AE", "pooled"),
    ("detail", "detail", "pooled"),
)


@dataclass(frozen=True, slots=True)
class OutcomeCount:
    outcome: str
    count: int
    share: float  # percent of all records
    kind: str  # ok, timeout, status, cancelled or failed: the colour it is shown in


@dataclass(frozen=True, slots=True)
class Bin:
    """Records whose total time falls in [low, high) milliseconds."""

    low: float
    high: float
    ok: int
    failed: int


@dataclass(frozen=True, slots=True)
class PhaseTiming:
    """A phase's time over the successes that timed it, in milliseconds."""

    phase: str
    count: int
    p50: float
    p90: float
    p99: float
    max: float


@dataclass(frozen=True, slots=True)
class FailureGroup:
    outcome: str
    count: int
    #: (detail with the target's own address as HOST:PORT, count)
    patterns: list[tuple[str, int]]
    #: (target, detail) of the first EXAMPLES_PER_OUTCOME
    examples: list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Implementation:
    uid: str
    version: str
    stack: str
    count: int


@dataclass(frozen=True, slots=True)
class Named:
    value: str
    name: str
    count: int


@dataclass
class Report:
    total: int = 0
    ok: int = 0
    outcomes: list[OutcomeCount] = field(default_factory=list)
    #: p50, p90, p99 and max total time of successes (ms), if any
    latency: dict[str, float] = field(default_factory=dict)
    histogram: list[Bin] = field(default_factory=list)
    phases: list[PhaseTiming] = field(default_factory=list)
    failures: list[FailureGroup] = field(default_factory=list)
    implementations: list[Implementation] = field(default_factory=list)
    transfer_syntaxes: list[Named] = field(default_factory=list)
    #: None when no record carries a TLS version field at all
    tls_versions: list[Named] | None = None
    first_started: str = ""
    last_started: str = ""
    #: the table: {"columns": [[name, label, kind]...], "strings": [...],
    #: "rows": [[...]...], "base": epoch ms of the first start}
    table: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return self.total - self.ok


def outcome_kind(outcome: str) -> str:
    if outcome == "success":
        return "ok"
    if outcome == "cancelled":
        return "cancelled"
    if outcome.startswith("timeout"):
        return "timeout"
    if outcome.startswith("status-"):
        return "status"
    return "failed"


def stack_of(uid: str) -> str:
    for root, name in STACK_ROOTS:
        if uid == root or uid.startswith(root + "."):
            return name
    return ""


def target_text(row: Mapping[str, Any]) -> str:
    try:
        return str(Target(str(row["host"]), int(row["port"]), row.get("called_aet") or None))
    except (KeyError, TypeError, ValueError):
        return f"{row.get('host')}:{row.get('port')}"


def detail_pattern(row: Mapping[str, Any]) -> str:
    """The detail with the target's own address taken out, so that the same
    failure on many targets reads as one line."""
    detail = str(row.get("detail") or "")
    host, port = row.get("host"), row.get("port")
    for address in (f"[{host}]:{port}", f"{host}:{port}"):
        detail = detail.replace(address, "HOST:PORT")
    return detail


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _epoch_ms(text: Any) -> int | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return round(moment.timestamp() * 1000)


def histogram_bins(ok: list[float], failed: list[float]) -> list[Bin]:
    """R10 bins on a log scale from the decade of the fastest to that of the
    slowest; zero and negative times go in the first bin."""
    times = [t for t in (*ok, *failed) if t > 0]
    if not times:
        return [Bin(0.0, 1.0, len(ok), len(failed))] if ok or failed else []
    first = math.floor(math.log10(min(times)))
    last = math.floor(math.log10(max(times)))
    edges = [step * 10.0**decade for decade in range(first, last + 1) for step in _R10]
    edges.append(10.0 ** (last + 1))
    # trim empty bins at either end, keeping the edges readable
    counts_ok = [0] * (len(edges) - 1)
    counts_failed = [0] * (len(edges) - 1)
    for values, counts in ((ok, counts_ok), (failed, counts_failed)):
        for value in values:
            counts[_bin_index(edges, value)] += 1
    used = [i for i in range(len(counts_ok)) if counts_ok[i] or counts_failed[i]]
    low, high = used[0], used[-1]
    return [
        Bin(round(edges[i], 6), round(edges[i + 1], 6), counts_ok[i], counts_failed[i])
        for i in range(low, high + 1)
    ]


def _bin_index(edges: list[float], value: float) -> int:
    import bisect

    index = bisect.bisect_right(edges, value) - 1
    return min(max(index, 0), len(edges) - 2)


def _named(counter: Counter[str], *, names: bool) -> list[Named]:
    return [
        Named(value, uid_name(value) if names else value, count)
        for value, count in sorted(counter.items(), key=lambda item: (-item[1], item[0]))
    ]


def aggregate(rows: Iterable[Mapping[str, Any]]) -> Report:
    report = Report()
    outcomes: Counter[str] = Counter()
    ok_times: list[float] = []
    failed_times: list[float] = []
    phase_times: dict[str, list[float]] = {phase: [] for phase in PHASES}
    groups: dict[str, tuple[Counter[str], list[tuple[str, str]]]] = {}
    implementations: Counter[tuple[str, str]] = Counter()
    syntaxes: Counter[str] = Counter()
    tls: Counter[str] = Counter()
    tls_seen = False
    strings: list[str] = []
    pool: dict[str, int] = {}
    table_rows: list[list[Any]] = []
    starts: list[int | None] = []

    def pooled(value: Any) -> int | None:
        if value is None or value == "":
            return None
        text = str(value)
        index = pool.get(text)
        if index is None:
            index = pool[text] = len(strings)
            strings.append(text)
        return index

    for row in rows:
        report.total += 1
        outcome = str(row.get("outcome") or "")
        outcomes[outcome] += 1
        total = _number(row.get("total_ms"))
        if outcome == "success":
            report.ok += 1
            if total is not None:
                ok_times.append(total)
            for phase in PHASES:
                value = _number(row.get(f"{phase}_ms"))
                if value is not None:
                    phase_times[phase].append(value)
        else:
            if total is not None and outcome != "cancelled":
                failed_times.append(total)
            patterns, examples = groups.setdefault(outcome, (Counter(), []))
            patterns[detail_pattern(row)] += 1
            if len(examples) < EXAMPLES_PER_OUTCOME:
                examples.append((target_text(row), str(row.get("detail") or "")))
        uid = row.get("implementation_class_uid") or ""
        version = row.get("implementation_version_name") or ""
        if uid or version:
            implementations[(str(uid), str(version))] += 1
        if row.get("transfer_syntax"):
            syntaxes[str(row["transfer_syntax"])] += 1
        if "tls_version" in row:
            tls_seen = True
            tls[str(row["tls_version"] or "none (plain TCP)")] += 1
        starts.append(_epoch_ms(row.get("started")))
        cells: list[Any] = []
        for name, _, kind in COLUMNS:
            value = row.get(name)
            if kind == "pooled":
                cells.append(pooled(value))
            elif kind == "offset":
                cells.append(None)  # filled in below, from the first start
            elif kind in ("ms", "int", "status"):
                number = _number(value)
                cells.append(None if number is None else (int(number) if kind != "ms" else number))
            else:
                cells.append("" if value is None else str(value))
        table_rows.append(cells)

    known = [start for start in starts if start is not None]
    base = min(known) if known else 0
    offset_column = [kind for _, _, kind in COLUMNS].index("offset")
    for cells, start in zip(table_rows, starts, strict=True):
        cells[offset_column] = None if start is None else start - base
    if known:
        report.first_started = _iso(base)
        report.last_started = _iso(max(known))
    report.table = {
        "columns": [list(column) for column in COLUMNS],
        "strings": strings,
        "rows": table_rows,
        "base": base,
    }

    total = report.total or 1
    report.outcomes = [
        OutcomeCount(name, count, 100.0 * count / total, outcome_kind(name))
        for name, count in sorted(outcomes.items(), key=lambda item: (-item[1], item[0]))
    ]
    if ok_times:
        ordered = sorted(ok_times)
        report.latency = {f"p{p}": percentile(ordered, p) for p in (50, 90, 99)}
        report.latency["max"] = ordered[-1]
    report.histogram = histogram_bins(ok_times, failed_times)
    for phase in PHASES:
        values = sorted(phase_times[phase])
        if values:
            report.phases.append(
                PhaseTiming(
                    phase,
                    len(values),
                    percentile(values, 50),
                    percentile(values, 90),
                    percentile(values, 99),
                    values[-1],
                )
            )
    report.failures = [
        FailureGroup(
            outcome,
            outcomes[outcome],
            patterns.most_common(PATTERNS_PER_OUTCOME),
            examples,
        )
        for outcome, (patterns, examples) in sorted(
            groups.items(), key=lambda item: (-outcomes[item[0]], item[0])
        )
    ]
    report.implementations = [
        Implementation(uid, version, stack_of(uid), count)
        for (uid, version), count in sorted(
            implementations.items(), key=lambda item: (-item[1], item[0])
        )
    ]
    report.transfer_syntaxes = _named(syntaxes, names=True)
    report.tls_versions = _named(tls, names=False) if tls_seen else None
    return report


def _iso(epoch_ms: int) -> str:
    moment = datetime.fromtimestamp(epoch_ms / 1000.0, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
