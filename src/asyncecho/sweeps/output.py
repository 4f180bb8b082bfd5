"""What `asyncecho sweep` writes: the records (JSONL or CSV, one flushed
line per finished target), the live progress line, the summary; and what it
reads back for `--resume`."""

from __future__ import annotations

import csv
import heapq
import json
import math
import time
from array import array
from collections import Counter
from collections.abc import Iterator
from typing import Any, TextIO

from asyncecho.sweeps.records import FIELDS, SweepRecord, Target

TargetKey = tuple[str, int, str | None, str | None]


# --- records -------------------------------------------------------------------------


class JsonlWriter:
    """One JSON object per line, flushed as it is written."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def start(self) -> None:
        """Nothing: JSONL has no header."""

    def write(self, record: SweepRecord) -> None:
        self.write_row(record.as_dict())

    def write_row(self, row: dict[str, Any]) -> None:
        self.stream.write(json.dumps(row) + "\n")
        self.stream.flush()


class CsvWriter:
    """The same columns as CSV; the header only at the start of a file."""

    def __init__(self, stream: TextIO, *, header: bool = True) -> None:
        self.stream = stream
        self._csv = csv.writer(stream, lineterminator="\n")
        self._header = header

    def start(self) -> None:
        """The header, if the file needs one (apart from __init__, so that a
        write error is met where write errors are handled)."""
        if self._header:
            self._header = False
            self._csv.writerow(FIELDS)
            self.stream.flush()

    def write(self, record: SweepRecord) -> None:
        self.write_row(record.as_dict())

    def write_row(self, row: dict[str, Any]) -> None:
        self.start()
        self._csv.writerow(_csv_cell(row.get(name)) for name in FIELDS)
        self.stream.flush()


def _csv_cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


# --- --resume --------------------------------------------------------------------------


class ResumeError(ValueError):
    pass


_INT_FIELDS = frozenset({"port", "status"})
_FLOAT_FIELDS = frozenset(name for name in FIELDS if name.endswith("_ms"))


def _typed(row: dict[str, str]) -> dict[str, Any]:
    """A CSV row with the types of `SweepRecord.as_dict()` (so that it can
    be written out as JSONL too)."""
    typed: dict[str, Any] = {}
    for name in FIELDS:
        text = row.get(name, "")
        if name == "ok":
            typed[name] = text == "true"
        elif not text:
            typed[name] = None
        elif name in _INT_FIELDS:
            typed[name] = int(text)
        elif name in _FLOAT_FIELDS:
            typed[name] = float(text)
        else:
            typed[name] = text
    return typed


class EarlierOutput:
    """The output of an earlier sweep, read back for `--resume`: its final
    records (anything but `cancelled`), the first one per target, are what
    a resumed run keeps; its targets are not checked again.

    The file is read twice, as a stream each time (it can be as large as the
    sweep): `scan()` before the sweep, for the targets done, then `rows()`
    to carry the kept records over into the new output. A last line that
    does not end in a newline was cut short by a crash mid-write: it is left
    out (its target is checked again), even if it happens to parse."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.format = ""
        self.done: set[TargetKey] = set()
        self.kept = 0
        self.cancelled = 0
        self.unreadable = 0
        self.torn = False

    def _open(self) -> TextIO:
        # utf-8-sig, errors="replace": a stray byte makes a line unreadable,
        # never a traceback.
        return open(self.path, encoding="utf-8-sig", errors="replace", newline="")

    def scan(self) -> None:
        """Raises OSError, or ResumeError if the file is not a sweep's output."""
        with open(self.path, "rb") as raw:
            size = raw.seek(0, 2)
            if size:
                raw.seek(size - 1)
                self.torn = raw.read(1) != b"\n"
        self.done.clear()
        self.kept = self.cancelled = self.unreadable = 0
        for _ in self._final_rows(count=True):
            pass

    def rows(self) -> Iterator[dict[str, Any]]:
        """The kept records, in file order, as `SweepRecord.as_dict()` rows."""
        yield from self._final_rows(count=False)

    def _final_rows(self, *, count: bool) -> Iterator[dict[str, Any]]:
        seen: set[TargetKey] = set()
        with self._open() as stream:
            for row in self._parsed(stream):
                if row is None:
                    if count:
                        self.unreadable += 1
                    continue
                key, outcome, fields = row
                if outcome == "cancelled":
                    if count:
                        self.cancelled += 1
                    continue
                if key in seen:
                    continue  # an earlier resume appended it twice: one record per target
                seen.add(key)
                if count:
                    self.done.add(key)
                    self.kept += 1
                yield fields

    def _parsed(self, stream: TextIO) -> Iterator[tuple[TargetKey, str, dict[str, Any]] | None]:
        first = ""
        for line in stream:
            first = line.strip()
            if first:
                break
        if not first:
            self.format = self.format or "jsonl"
            return
        if first.startswith("{"):
            self.format = "jsonl"
            rows: Iterator[dict[str, Any] | None] = self._jsonl(first, stream)
        elif next(csv.reader([first]))[:1] == ["host"]:
            self.format = "csv"
            rows = self._csv(first, stream)
        else:
            raise ResumeError("not a sweep output (JSONL or CSV)")
        for fields in rows:
            yield None if fields is None else _keyed(fields)

    def _jsonl(self, first: str, stream: TextIO) -> Iterator[dict[str, Any] | None]:
        line = first + "\n"
        while line:
            following = stream.readline()
            whole = line.endswith("\n") or bool(following)
            if line.strip():
                if not whole and self.torn:
                    yield None
                else:
                    try:
                        row = json.loads(line)
                    except ValueError:
                        row = None
                    yield row if isinstance(row, dict) else None
            line = following

    def _csv(self, header: str, stream: TextIO) -> Iterator[dict[str, Any] | None]:
        columns = next(csv.reader([header]))
        previous: list[str] | None = None
        try:
            # over the stream, not line by line: a quoted detail may hold a newline
            for cells in csv.reader(stream):
                if not any(cell.strip() for cell in cells):
                    continue
                if previous is not None:
                    yield self._csv_row(columns, previous)
                previous = cells
        except csv.Error:  # the rest of the file is not CSV
            if previous is not None:
                yield self._csv_row(columns, previous)
            yield None
            return
        if previous is not None:
            yield None if self.torn else self._csv_row(columns, previous)

    @staticmethod
    def _csv_row(columns: list[str], cells: list[str]) -> dict[str, Any] | None:
        try:
            return _typed(dict(zip(columns, cells, strict=False)))
        except ValueError:
            return None


def _keyed(fields: dict[str, Any]) -> tuple[TargetKey, str, dict[str, Any]] | None:
    try:
        target = Target(
            str(fields["host"]),
            int(fields["port"]),
            fields.get("called_aet") or None,
            fields.get("calling_aet") or None,
        )
        outcome = fields["outcome"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(outcome, str) or not outcome:
        return None
    return target.key, outcome, fields


# --- progress --------------------------------------------------------------------------


class Tally:
    """Counts as records arrive: per outcome, and the latencies of successes."""

    SLOWEST = 5

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.done = 0
        self.earlier = 0
        self.ok = 0
        self.outcomes: Counter[str] = Counter()
        self.latencies = array("d")  # seconds, successes only
        self._slowest: list[tuple[float, str]] = []

    @property
    def failed(self) -> int:
        return self.done - self.ok

    def add(self, record: SweepRecord) -> None:
        self._add(record.outcome, record.ok, record.timings.total, record.target)

    def add_earlier(self, row: dict[str, Any]) -> None:
        """A record carried over from the --resume file (counted, but not in
        this run's rate)."""
        self.earlier += 1
        total_ms = row.get("total_ms")
        total = total_ms / 1000.0 if isinstance(total_ms, (int, float)) else None
        target = Target(
            str(row["host"]),
            int(row["port"]),
            row.get("called_aet") or None,
            row.get("calling_aet") or None,
        )
        self._add(str(row["outcome"]), row.get("ok") is True, total, target)

    @property
    def new(self) -> int:
        """Records of this run."""
        return self.done - self.earlier

    def _add(self, outcome: str, ok: bool, total: float | None, target: Target) -> None:
        self.done += 1
        self.outcomes[outcome] += 1
        if not ok:
            return
        self.ok += 1
        if total is not None:
            self.latencies.append(total)
            item = (total, str(target))
            if len(self._slowest) < self.SLOWEST:
                heapq.heappush(self._slowest, item)
            elif item > self._slowest[0]:
                heapq.heapreplace(self._slowest, item)

    def slowest(self) -> list[tuple[float, str]]:
        return sorted(self._slowest, reverse=True)

    def elapsed(self) -> float:
        return time.monotonic() - self.started


def percentile(ordered: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[rank - 1]


def _clock(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def progress_text(tally: Tally, total: int | None, in_flight: int) -> str:
    """`total` is this run's targets; a resumed run counts the records it
    carried over on top of it."""
    elapsed = tally.elapsed()
    rate = tally.new / elapsed if elapsed > 0 else 0.0
    done = f"{tally.done}/{total + tally.earlier}" if total is not None else f"{tally.done}"
    text = f"{done} done, {tally.ok} ok, {tally.failed} failed, {in_flight} in flight, {rate:.1f}/s"
    if total is not None and tally.new < total and rate > 0:
        text += f", ETA {_clock((total - tally.new) / rate)}"
    return text


class ProgressLine:
    """One line on a terminal, redrawn in place with `\\r`."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._shown = False

    def draw(self, text: str) -> None:
        self.stream.write(f"\r{text}\x1b[K")
        self.stream.flush()
        self._shown = True

    def clear(self) -> None:
        if self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False


def _ms(seconds: float) -> str:
    return f"{seconds * 1000.0:.2f} ms"


def summary_lines(
    tally: Tally,
    *,
    not_started: int | None = None,
    stopped: str = "",
    resume_hint: str = "--resume with the records checks the rest",
    resumed_from: str = "",
) -> list[str]:
    """The end-of-sweep report over the whole run (a resumed run's carried
    over records included): counts per outcome, latency percentiles of
    successes, the slowest targets."""
    elapsed = tally.elapsed()
    rate = tally.new / elapsed if elapsed > 0 else 0.0
    if tally.earlier:
        head = (
            f"sweep: {tally.done} targets ({tally.earlier} from --resume {resumed_from}, "
            f"{tally.new} in {elapsed:.2f} s, {rate:.1f}/s)"
        )
    else:
        head = f"sweep: {tally.done} targets in {elapsed:.2f} s ({rate:.1f}/s)"
    lines = [f"{head}: {tally.ok} ok, {tally.failed} failed"]
    if stopped:
        lines.append(
            f"stopped ({stopped}): in-flight targets recorded as cancelled"
            + (f", {not_started} not started" if not_started else "")
            + f"; {resume_hint}"
        )
    width = max((len(name) for name in tally.outcomes), default=0)
    for name, count in sorted(tally.outcomes.items(), key=lambda item: (-item[1], item[0])):
        lines.append(f"  {name:<{width}}  {count:>7}")
    if tally.latencies:
        ordered = sorted(tally.latencies)
        lines.append(
            "latency of successes: "
            + ", ".join(f"p{p} {_ms(percentile(ordered, p))}" for p in (50, 90, 99))
            + f", max {_ms(ordered[-1])}"
        )
        lines.append("slowest successes:")
        lines += [f"  {_ms(seconds):>11}  {target}" for seconds, target in tally.slowest()]
    return lines
