"""Sweep records as files: the writers (JSONL or CSV, one flushed line per
finished target) and the reader of a sweep's output (for `--resume`, and
for `asyncecho merge`). The progress line and the summary are in
`sweeps.summary`.

May import: `sweeps.records` and the standard library.
"""

from __future__ import annotations

import csv
import json
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
            typed[name] = "" if name == "detail" else None  # as_dict()'s detail is never None
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
        self._check_torn()
        self.done.clear()
        self.kept = self.cancelled = self.unreadable = 0
        for _ in self._final_rows(count=True):
            pass

    def _check_torn(self) -> None:
        with open(self.path, "rb") as raw:
            size = raw.seek(0, 2)
            if size:
                raw.seek(size - 1)
                self.torn = raw.read(1) != b"\n"

    def records(self) -> Iterator[tuple[TargetKey, str, dict[str, Any]] | None]:
        """Every record of the file in order, cancelled ones and repeated
        targets included, as (target key, outcome, `as_dict()` row); None
        for an unreadable line (counted in `unreadable`). Raises OSError, or
        ResumeError if the file is not a sweep's output."""
        self._check_torn()
        self.unreadable = 0
        with self._open() as stream:
            for record in self._parsed(stream):
                if record is None:
                    self.unreadable += 1
                yield record

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
