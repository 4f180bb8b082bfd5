"""`asyncecho report RECORDS... -o report.html`: one self-contained HTML page
for a person to open, from the records of a sweep, its shards or resumed
runs (JSONL or CSV, read by the sweep's reader).

Several files are combined by `asyncecho merge`'s rules first: one record per
target, the later winning in the order the files are given and within each
file, a `cancelled` record never replacing a real one.

Exit status: 0 when the report was written (whatever the targets said: the
page says it); 1 if it could not be written; 2 for usage errors (a bad
option, an input that cannot be read or is not a sweep's output, no record
in any input, `-o` naming an input, Jinja2 not installed).

May import: `cli.merge` (its reader and rules), `cli.sweep_output`,
`cli.output`, `asyncecho.report`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from asyncecho._version import __version__

if TYPE_CHECKING:
    from asyncecho.cli.output import CliLog

PROG = "asyncecho report"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

EPILOG = """\
The page holds everything it shows (no request to any other host): counts
per outcome, latency histogram and per-phase timings, the failed targets
grouped by outcome, the peers' implementations (class UID, version name),
accepted transfer syntaxes, and a table of every target that sorts and
filters in the browser. Needs the report extra: pip install "asyncecho[report]".

exit status: 0 when the report was written; 1 if it could not be written;
2 for usage errors (an unreadable input, one that is not a sweep's output,
no record in any input, -o naming an input, Jinja2 not installed)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        usage=f"{PROG} [options] RECORDS... -o REPORT.html",
        description="Write one self-contained HTML report from the records of "
        "`asyncecho sweep` (JSONL or CSV; several files are merged as by `asyncecho merge`).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("files", metavar="RECORDS", nargs="+", help="sweep outputs, in order")
    parser.add_argument(
        "-o", "--output", metavar="REPORT", required=True, help="the HTML file to write"
    )
    parser.add_argument(
        "--title", default="asyncecho sweep report", help="the page's title (default: %(default)s)"
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no line saying what was written"
    )
    parser.add_argument("--version", action="version", version=f"asyncecho report v{__version__}")
    return parser


def size_text(size: int) -> str:
    if size >= 1_000_000:
        return f"{size / 1_000_000:.1f} MB"
    return f"{size / 1000:.0f} kB"


def write_report(
    path: str,
    rows: Sequence[dict[str, Any]],
    log: CliLog,
    *,
    title: str = "asyncecho sweep report",
    sources: Sequence[str] = (),
    quiet: bool = False,
) -> bool:
    """Render and write the page; False (said) if it could not be written.
    Shared with `asyncecho sweep --report`."""
    from asyncecho.report import render_html, write_html

    html = render_html(rows, title=title, sources=sources)
    try:
        size = write_html(path, html)
    except OSError as exc:
        log.say("error", f"cannot write the report to {path}: {exc.strerror or exc}")
        return False
    if not quiet:
        print(f"report: {path} ({len(rows):,} targets, {size_text(size)})", file=sys.stderr)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from asyncecho.cli.merge import read
    from asyncecho.cli.output import CliLog
    from asyncecho.cli.sweep_output import same_file
    from asyncecho.report import missing

    log = CliLog("warning")
    problem = missing()
    if problem:
        log.say("error", problem)
        return EXIT_USAGE
    for name in args.files:
        if same_file(args.output, name):
            log.say("error", f"-o {args.output} is one of the records: writing would destroy it")
            return EXIT_USAGE
    merged = read(args.files, log)
    if merged is None:
        return EXIT_USAGE
    if not merged.rows:
        log.say("error", "nothing to report: no record in any input")
        return EXIT_USAGE
    several = len(merged.in_several_files())
    if several:
        log.say(
            "warning",
            f"{several} target(s) found in more than one file, the later record kept "
            "(asyncecho merge names them)",
        )
    rows = list(merged.rows.values())
    if not write_report(
        args.output, rows, log, title=args.title, sources=args.files, quiet=args.quiet
    ):
        return EXIT_FAILED
    return EXIT_OK
