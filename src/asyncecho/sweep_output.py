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
from collections.abc import Iterable
from typing import TextIO

from .sweeper import FIELDS, SweepRecord

TargetKey = tuple[str, int, str | None, str | None]


# --- records -------------------------------------------------------------------------


class JsonlWriter:
    """One JSON object per line, flushed as it is written."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, record: SweepRecord) -> None:
        self.stream.write(json.dumps(record.as_dict()) + "\n")
        self.stream.flush()


class CsvWriter:
    """The same columns as CSV; the header only at the start of a file."""

    def __init__(self, stream: TextIO, *, header: bool = True) -> None:
        self.stream = stream
        self._csv = csv.writer(stream, lineterminator="\n")
        if header:
            self._csv.writerow(FIELDS)
            stream.flush()

    def write(self, record: SweepRecord) -> None:
        row = record.as_dict()
        self._csv.writerow(_csv_cell(row[name]) for name in FIELDS)
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


def finished_targets(lines: Iterable[str]) -> tuple[set[TargetKey], int]:
    """The targets an earlier output (JSONL, or the CSV output) holds a
    final record for (anything but `cancelled`), and how many lines were
    unreadable (a line cut short by a crash, say)."""
    done: set[TargetKey] = set()
    unreadable = 0
    columns: list[str] | None = None
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line:
            continue
        if columns is None and not line.startswith("{"):
            if number == 1 and line.split(",")[:1] == ["host"]:
                columns = next(csv.reader([line]))
                continue
            if number == 1:
                raise ResumeError("not a sweep output (JSONL or CSV)")
        try:
            if columns is None:
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise ValueError(line)
            else:
                row = dict(zip(columns, next(csv.reader([line])), strict=False))
            outcome = row["outcome"]
            key = (
                str(row["host"]),
                int(row["port"]),
                row.get("called_aet") or None,
                row.get("calling_aet") or None,
            )
        except (ValueError, KeyError, TypeError):
            unreadable += 1
            continue
        if outcome and outcome != "cancelled":
            done.add(key)
    return done, unreadable


# --- progress --------------------------------------------------------------------------


class Tally:
    """Counts as records arrive: per outcome, and the latencies of successes."""

    SLOWEST = 5

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.done = 0
        self.ok = 0
        self.outcomes: Counter[str] = Counter()
        self.latencies = array("d")  # seconds, successes only
        self._slowest: list[tuple[float, str]] = []

    @property
    def failed(self) -> int:
        return self.done - self.ok

    def add(self, record: SweepRecord) -> None:
        self.done += 1
        self.outcomes[record.outcome] += 1
        if not record.ok:
            return
        self.ok += 1
        total = record.timings.total
        if total is not None:
            self.latencies.append(total)
            item = (total, str(record.target))
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
    elapsed = tally.elapsed()
    rate = tally.done / elapsed if elapsed > 0 else 0.0
    done = f"{tally.done}/{total}" if total is not None else f"{tally.done}"
    text = f"{done} done, {tally.ok} ok, {tally.failed} failed, {in_flight} in flight, {rate:.1f}/s"
    if total is not None and tally.done < total and rate > 0:
        text += f", ETA {_clock((total - tally.done) / rate)}"
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
    tally: Tally, *, not_started: int | None = None, skipped: int = 0, stopped: str = ""
) -> list[str]:
    """The end-of-sweep report: counts per outcome, latency percentiles of
    successes, the slowest targets."""
    elapsed = tally.elapsed()
    rate = tally.done / elapsed if elapsed > 0 else 0.0
    lines = [
        f"sweep: {tally.done} targets in {elapsed:.2f} s ({rate:.1f}/s): "
        f"{tally.ok} ok, {tally.failed} failed"
    ]
    if skipped:
        lines.append(f"skipped {skipped} targets already done in the --resume file")
    if stopped:
        lines.append(
            f"stopped ({stopped}): in-flight targets recorded as cancelled"
            + (f", {not_started} not started" if not_started else "")
            + "; --resume OUTPUT checks the rest"
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
