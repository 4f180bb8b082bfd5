"""`asyncecho merge FILE... -o OUT`: combine the records of sweep shards and
resumed runs into one record per target, with the combined summary on
stderr.

The later record of a target wins, in the order the files are given and
within each file, except that a `cancelled` record (the sweep was stopped
before the target was checked) never replaces a real one. A target found in
more than one file (two shards that both checked it: different lists, or a
shard given twice) is reported. Input is JSONL or CSV (each file's own, told
from its first line); the output's format comes from `--format`, else from
`-o`'s extension (`.csv`), else JSONL. The inputs are read whole before the
output is written, through a temporary file: `-o` may name one of them.

Exit status: 0 if every target succeeded; 1 if any failed (or the output
could not be written); 2 for usage errors (a bad option, a file that cannot
be read or is not a sweep's output, no record in any input).

May import: the other `cli.sweep_*` modules (output, args), `cli.output`,
`asyncecho.sweeps` (output, summary); nothing of the API that does I/O.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from asyncecho._version import __version__

if TYPE_CHECKING:
    from asyncecho.cli.output import CliLog
    from asyncecho.sweeps.output import TargetKey

PROG = "asyncecho merge"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

#: Targets found in more than one file named in the warning (all are counted).
DUPLICATES_SHOWN = 5

EPILOG = """\
rules: one record per target (host, port, called and calling AE title); the
later record wins, in the order the files are given and within each file,
but a cancelled record never replaces a real one.

exit status: 0 if every target succeeded; 1 if any failed or the output could
not be written; 2 for usage errors (an unreadable input, one that is not a
sweep's output, no record in any input)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        usage=f"{PROG} [options] FILE... [-o OUT]",
        description="Combine the records of `asyncecho sweep` shards and resumed runs "
        "(JSONL or CSV) into one record per target, with the combined summary on stderr.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("files", metavar="FILE", nargs="+", help="sweep outputs, in order")
    parser.add_argument(
        "-o", "--output", metavar="OUT", help="write the records to OUT (default: stdout)"
    )
    parser.add_argument(
        "--format",
        choices=["jsonl", "csv"],
        help="jsonl (default) or csv (the default when OUT ends in .csv)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no summary")
    parser.add_argument("--version", action="version", version=f"asyncecho merge v{__version__}")
    return parser


@dataclass
class Merged:
    """The records kept, one per target in the order first met, and where
    each target was found."""

    rows: dict[TargetKey, dict[str, Any]] = field(default_factory=dict)
    files: dict[TargetKey, list[int]] = field(default_factory=dict)
    replaced: int = 0  # records that a later one replaced
    cancelled_kept_out: int = 0  # cancelled records that did not replace a real one

    def add(self, key: TargetKey, outcome: str, row: dict[str, Any], file: int) -> None:
        found = self.files.setdefault(key, [])
        if file not in found:
            found.append(file)
        earlier = self.rows.get(key)
        if earlier is not None:
            if outcome == "cancelled" and earlier.get("outcome") != "cancelled":
                self.cancelled_kept_out += 1
                return
            self.replaced += 1
        self.rows[key] = row

    def in_several_files(self) -> list[tuple[TargetKey, list[int]]]:
        return [(key, found) for key, found in self.files.items() if len(found) > 1]


def read(paths: Sequence[str], log: CliLog) -> Merged | None:
    """Every input, in order; None (said) if one cannot be read or is not
    a sweep's output."""
    from asyncecho.sweeps.output import EarlierOutput, ResumeError

    merged = Merged()
    for number, path in enumerate(paths):
        source = EarlierOutput(path)
        try:
            for record in source.records():
                if record is not None:
                    merged.add(*record, number)
        except OSError as exc:
            log.say("error", f"cannot read {path}: {exc.strerror or exc}")
            return None
        except ResumeError as exc:
            log.say("error", f"{path}: {exc}")
            return None
        if source.unreadable:
            log.say(
                "warning",
                f"{path}: left out {source.unreadable} unreadable line(s) "
                "(a line cut short by a crash, say)",
            )
    return merged


def _target(key: TargetKey) -> str:
    from asyncecho.sweeps.records import Target

    return str(Target(*key))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from asyncecho.cli.output import CliLog

    log = CliLog("warning")
    fmt = args.format or ("csv" if (args.output or "").lower().endswith(".csv") else "jsonl")
    if not args.output and sys.stdout is None:
        log.say("error", "standard output is closed: name an output file with -o OUT")
        return EXIT_USAGE
    merged = read(args.files, log)
    if merged is None:
        return EXIT_USAGE
    if not merged.rows:
        # A merge of nothing must not look like one that passed.
        log.say("error", "nothing to merge: no record in any input")
        return EXIT_USAGE
    several = merged.in_several_files()
    if several:
        shown = "; ".join(
            f"{_target(key)} in " + ", ".join(args.files[i] for i in found)
            for key, found in several[:DUPLICATES_SHOWN]
        )
        more = (
            f" (and {len(several) - DUPLICATES_SHOWN} more)"
            if len(several) > DUPLICATES_SHOWN
            else ""
        )
        log.say(
            "warning",
            f"{len(several)} target(s) found in more than one file, the later record kept: "
            f"{shown}{more}",
        )
    return _write(args, log, fmt, merged)


def _write(args: argparse.Namespace, log: CliLog, fmt: str, merged: Merged) -> int:
    import os

    from asyncecho.cli.sweep_output import (
        RecordOutput,
        open_output,
        quiet_stdout,
        record_writer,
        same_file,
    )
    from asyncecho.sweeps.summary import Tally, summary_lines

    tally = Tally()
    path = args.output
    temporary = ""
    if path:
        in_place = any(same_file(path, name) for name in args.files)
        try:
            stream, temporary = open_output(path, in_place)
        except OSError as exc:
            log.say("error", f"cannot write {path}: {exc.strerror or exc}")
            return EXIT_USAGE
    else:
        stream = sys.stdout
    output = RecordOutput(record_writer(stream, fmt, header=True), path or "standard output", "")
    try:
        output.writer.start()
        for row in merged.rows.values():
            output.writer.write_row(row)
            tally.add_earlier(row)
        if path:
            stream.close()
            if temporary:
                os.replace(temporary, path)
                temporary = ""
    except OSError as exc:
        output.write_error(log, exc)
    finally:
        if path:
            try:
                stream.close()
            except OSError:
                pass
            if temporary:
                try:
                    os.unlink(temporary)
                except OSError:
                    pass
        else:
            quiet_stdout()
    if not args.quiet:
        files = len(args.files)
        head = f"merge: {tally.done} targets from {files} file{'s' if files != 1 else ''}"
        for line in summary_lines(tally, head=head):
            print(line, file=sys.stderr)
    if output.failed or tally.failed:
        return EXIT_FAILED
    return EXIT_OK
