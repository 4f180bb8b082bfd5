"""What `asyncecho sweep` and `asyncecho merge` say on stderr: the counts as
records arrive (`Tally`: per outcome, the latencies of successes, the
slowest, the first failed targets), the live progress line and the summary.

May import: `sweeps.records` and the standard library.
"""

from __future__ import annotations

import heapq
import math
import time
from array import array
from collections import Counter
from typing import Any, TextIO

from asyncecho.sweeps.records import SweepRecord, Target


class Tally:
    """Counts as records arrive: per outcome, the latencies of successes,
    the slowest successes and the first failed targets."""

    SLOWEST = 5
    #: failed targets named in the summary (the records hold them all)
    FAILED_SHOWN = 10

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.done = 0
        self.earlier = 0
        self.ok = 0
        self.outcomes: Counter[str] = Counter()
        self.latencies = array("d")  # seconds, successes only
        self._slowest: list[tuple[float, str]] = []
        #: (target, outcome, detail) of the first FAILED_SHOWN failures
        self.failures: list[tuple[str, str, str]] = []

    @property
    def failed(self) -> int:
        return self.done - self.ok

    def add(self, record: SweepRecord) -> None:
        self._add(record.outcome, record.ok, record.timings.total, record.target, record.detail)

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
        detail = row.get("detail") or ""
        self._add(str(row["outcome"]), row.get("ok") is True, total, target, str(detail))

    @property
    def new(self) -> int:
        """Records of this run."""
        return self.done - self.earlier

    def _add(
        self, outcome: str, ok: bool, total: float | None, target: Target, detail: str
    ) -> None:
        self.done += 1
        self.outcomes[outcome] += 1
        if not ok:
            if len(self.failures) < self.FAILED_SHOWN:
                self.failures.append((str(target), outcome, detail))
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
    head: str = "",
) -> list[str]:
    """The end-of-sweep report over the whole run (a resumed run's carried
    over records included): counts per outcome, latency percentiles of
    successes, the slowest targets, the first failed targets. `head`
    replaces the first line's "sweep: N targets in T s" (merge's own)."""
    elapsed = tally.elapsed()
    rate = tally.new / elapsed if elapsed > 0 else 0.0
    if not head and tally.earlier:
        head = (
            f"sweep: {tally.done} targets ({tally.earlier} from --resume {resumed_from}, "
            f"{tally.new} in {elapsed:.2f} s, {rate:.1f}/s)"
        )
    elif not head:
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
    if tally.failures:
        lines.append(
            "failed targets:"
            if tally.failed <= len(tally.failures)
            else f"failed targets (the first {len(tally.failures)}):"
        )
        lines += [
            f"  {target}  {outcome}" + (f": {detail}" if detail else "")
            for target, outcome, detail in tally.failures
        ]
    return lines
