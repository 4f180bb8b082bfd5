"""Where `asyncecho sweep`'s records go: the writer for the chosen format,
the output file (written in place through a temporary file when `-o` names
the `--resume` file), the `--resume` file's records carried over first, and
a quiet standard output after a broken pipe.

May import: `asyncecho.sweeps` (output, summary) and the CLI's log helper; not
`cli.sweep` (which imports this).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from asyncecho.cli.output import CliLog
    from asyncecho.sweeps.output import CsvWriter, EarlierOutput, JsonlWriter
    from asyncecho.sweeps.summary import Tally


def record_writer(stream: TextIO, fmt: str, *, header: bool) -> JsonlWriter | CsvWriter:
    from asyncecho.sweeps.output import CsvWriter, JsonlWriter

    return CsvWriter(stream, header=header) if fmt == "csv" else JsonlWriter(stream)


class RecordOutput:
    """Where the records go, and what to say about it."""

    def __init__(self, writer: JsonlWriter | CsvWriter, name: str, resume_hint: str) -> None:
        self.writer = writer
        self.name = name  # for messages: the file, or "standard output"
        self.resume_hint = resume_hint
        self.failed = False

    def write_error(self, log: CliLog, exc: OSError) -> None:
        self.failed = True
        if not isinstance(exc, BrokenPipeError):
            log.say("error", f"cannot write the records to {self.name}: {exc.strerror or exc}")


def same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def open_output(path: str, in_place: bool) -> tuple[TextIO, str]:
    """The output stream, and the temporary file it writes when in place."""
    if not in_place:
        return open(path, "w", encoding="utf-8", newline=""), ""
    import stat
    import tempfile

    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(
        prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory
    )
    try:
        os.chmod(temporary, stat.S_IMODE(os.stat(path).st_mode))
        return open(fd, "w", encoding="utf-8", newline=""), temporary
    except BaseException:
        os.close(fd)
        os.unlink(temporary)
        raise


def carry_over(
    earlier: EarlierOutput | None, log: CliLog, output: RecordOutput, tally: Tally
) -> bool:
    """The header, then the --resume file's final records; False (said) on
    a read or write error."""
    writer = output.writer
    try:
        writer.start()
    except OSError as exc:
        output.write_error(log, exc)
        return False
    if earlier is None:
        return True
    rows = earlier.rows()
    while True:
        try:
            row = next(rows, None)
        except OSError as exc:
            log.say("error", f"cannot read --resume file {earlier.path}: {exc.strerror or exc}")
            return False
        if row is None:
            return True
        try:
            writer.write_row(row)
        except OSError as exc:
            output.write_error(log, exc)
            return False
        tally.add_earlier(row)


def quiet_stdout() -> None:
    """After a broken pipe, stop Python from complaining at exit while it
    flushes stdout."""
    if sys.stdout is None:
        return
    try:
        sys.stdout.flush()
    except OSError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
