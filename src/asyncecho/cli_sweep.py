"""`asyncecho sweep TARGETS`: C-ECHO every target of a file, many at once,
one record per target (JSONL or CSV), a summary on stderr.

A regular target file is read twice: once to report bad lines and count the
targets (for `--strict`, before anything starts, and for the progress
line's total), then again as the sweep pulls targets. Standard input is read
once, as the sweep goes, with no total.

Exit status: 0 if every target succeeded; 1 if any failed; 2 for usage
errors (a bad option, an unreadable file, a bad line with `--strict`); 130
when stopped by SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, TextIO

from ._version import __version__
from .cli_echoscu import Security, _float, _port, _positive, add_ae_options, add_timeouts
from .cli_security import OptionError, add_client_tls_options, add_identity_options

if TYPE_CHECKING:
    from .cli_output import CliLog
    from .sweep_output import CsvWriter, JsonlWriter, TargetKey
    from .sweep_targets import TargetParser
    from .sweeper import Target

PROG = "asyncecho sweep"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

#: File descriptors kept free beside the associations: standard streams,
#: the output file, the event loop's own, resolver threads.
FD_HEADROOM = 100

DESCRIPTION = (
    "Verify DICOM connectivity to many peers at once: one association, C-ECHO "
    "and release per target, at most --concurrency at a time on one event "
    "loop. Writes one record per target as it finishes (JSONL, or CSV) and a "
    "summary on stderr."
)
EPILOG = """\
target file: one target per line, [CALLED_AET@]host[:port], IPv6 as [addr]:port;
'#' comments and blank lines are ignored; a host may be a CIDR block
(127.0.0.0/28). Or CSV with a header: host,port,called_aet,calling_aet.

--concurrency is kept below the open-file limit (ulimit -n), which is raised
up to its hard limit when needed: each association holds one socket.

exit status: 0 if every target succeeded; 1 if any failed; 2 for usage errors
(including a bad line with --strict); 130 when stopped by SIGINT/SIGTERM (the
in-flight targets are recorded as cancelled; --resume finishes the rest)."""


def _positive_float(text: str) -> float:
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        prefix_chars="-+",
        usage=f"{PROG} [options] TARGETS",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    params = parser.add_argument_group("Parameters")
    params.add_argument("targets", metavar="TARGETS", help="file of targets, or - for stdin")

    general = parser.add_argument_group("General Options")
    general.add_argument(
        "--version",
        action="version",
        version=f"asyncecho sweep v{__version__}",
        help="print version information and exit",
    )
    general.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress line and no summary (warnings and errors still print)",
    )

    targets = parser.add_argument_group("Target Options")
    targets.add_argument(
        "--port",
        metavar="[n]umber",
        type=_port,
        default=104,
        help="port of targets that give none (default: 104)",
    )
    targets.add_argument(
        "--max-cidr-hosts",
        metavar="[n]umber",
        type=_positive,
        default=4096,
        help="a CIDR block with more hosts than n is a bad line (default: 4096)",
    )
    targets.add_argument(
        "--strict",
        action="store_true",
        help="a bad line is an error (exit 2) instead of a warning and skipped",
    )
    targets.add_argument(
        "--resume",
        metavar="FILE",
        help="skip targets that already have a final (not cancelled) record in "
        "FILE, the output of an earlier sweep; when -o names the same file, "
        "new records are appended to it",
    )

    network = parser.add_argument_group("Network Options")
    add_ae_options(
        network, called_help="called AE title of targets that give none (default: ANY-SCP)"
    )
    add_timeouts(network)

    sweep = parser.add_argument_group("Sweep Options")
    sweep.add_argument(
        "-c",
        "--concurrency",
        metavar="[n]umber",
        type=_positive,
        default=256,
        help="at most n associations at once (default: 256; kept below the open-file limit)",
    )
    sweep.add_argument(
        "--rate",
        metavar="[n]umber",
        type=_positive_float,
        help="start at most n associations per second (default: no limit)",
    )
    sweep.add_argument(
        "--deadline",
        metavar="[s]econds",
        type=_positive_float,
        default=10.0,
        help="per target, from connect to release (default: 10 s)",
    )

    output = parser.add_argument_group("Output Options")
    output.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write the records to FILE (default: stdout)",
    )
    output.add_argument(
        "--format",
        choices=["jsonl", "csv"],
        help="jsonl (default) or csv (the default when FILE ends in .csv)",
    )
    add_client_tls_options(parser)
    add_identity_options(parser)
    return parser


# --- targets ---------------------------------------------------------------------------


@dataclass
class Plan:
    """What main() settled before the sweep starts."""

    args: argparse.Namespace
    lines: TextIO | None = None  # a regular file, rewound for the second pass
    pipe: IO[bytes] | None = None  # a pipe or terminal: read once, as the sweep goes
    total: int | None = None
    done: set[TargetKey] = field(default_factory=set)
    skipped: int = 0
    concurrency: int = 256
    bad_line: str = ""  # set when --strict met a bad line on a pipe
    security: Security | None = None  # TLS context and user identity


def _open_text(path: str) -> TextIO:
    # utf-8-sig: files saved by spreadsheets start with a BOM; a stray byte
    # becomes U+FFFD and so a bad line, never a traceback.
    return open(path, encoding="utf-8-sig", errors="replace", newline="")


def _parser(args: argparse.Namespace) -> TargetParser:
    from .sweep_targets import TargetParser

    return TargetParser(
        port=args.port,
        called_ae=args.called_aet,
        calling_ae=args.calling_aet,
        max_cidr_hosts=args.max_cidr_hosts,
    )


def _count(plan: Plan, log: CliLog, lines: Iterable[str]) -> bool:
    """First pass over a regular file: report bad lines, count the targets
    still to do. False if --strict met a bad line."""
    from .sweep_targets import BadLine

    args = plan.args
    parser = _parser(args)
    total = skipped = bad = 0
    for raw in lines:
        entry = parser.feed(raw)
        if entry is None:
            continue
        if isinstance(entry, BadLine):
            bad += 1
            log.say("error" if args.strict else "warning", f"{args.targets}: {entry}")
        elif plan.done:
            for target in entry.targets():
                if target.key in plan.done:
                    skipped += 1
                else:
                    total += 1
        else:
            total += entry.count
    plan.total, plan.skipped = total, skipped
    if bad and args.strict:
        log.say("error", f"{args.targets}: {bad} bad line(s); nothing was checked (--strict)")
        return False
    if bad:
        log.say("warning", f"{args.targets}: skipped {bad} bad line(s)")
    return True


def _file_targets(plan: Plan) -> Iterator[Target]:
    from .sweep_targets import TargetLine

    assert plan.lines is not None
    parser = _parser(plan.args)
    for raw in plan.lines:
        entry = parser.feed(raw)
        if isinstance(entry, TargetLine):  # bad lines were reported by _count()
            for target in entry.targets():
                if target.key not in plan.done:
                    yield target


async def _pipe_lines(pipe: IO[bytes]) -> AsyncIterator[str]:
    """Lines of a pipe or terminal, read by a daemon thread so that a slow
    writer never blocks the event loop, and a sweep stopped while it waits
    never waits for it. At most a few chunks are read ahead."""
    import asyncio
    import codecs
    import threading

    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[list[str] | None] = asyncio.Queue(maxsize=4)

    def put(item: list[str] | None) -> None:
        asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()

    def pump() -> None:
        decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
        read = getattr(pipe, "read1", pipe.read)
        pending = ""
        try:
            while True:
                chunk = read(65536)
                pieces = (pending + decoder.decode(chunk, final=not chunk)).split("\n")
                pending = pieces.pop()
                lines = [piece + "\n" for piece in pieces]
                if not chunk:
                    put([*lines, pending] if pending else lines)
                    break
                if lines:
                    put(lines)
        except Exception:  # the loop is gone or the pipe broke: end quietly
            pass
        try:
            put(None)
        except Exception:
            pass

    threading.Thread(target=pump, name="asyncecho-sweep-stdin", daemon=True).start()
    while (batch := await queue.get()) is not None:
        for line in batch:
            yield line


async def _pipe_targets(
    plan: Plan, say: Callable[[str, str], None], stop: Callable[[], None]
) -> AsyncIterator[Target]:
    from .sweep_targets import BadLine

    assert plan.pipe is not None
    args = plan.args
    parser = _parser(args)
    async for raw in _pipe_lines(plan.pipe):
        entry = parser.feed(raw)
        if entry is None:
            continue
        if isinstance(entry, BadLine):
            if args.strict:
                plan.bad_line = str(entry)
                say("error", f"{args.targets}: {entry}; stopping (--strict)")
                stop()
                return
            say("warning", f"{args.targets}: {entry}")
            continue
        for target in entry.targets():
            if target.key in plan.done:
                plan.skipped += 1
            else:
                yield target


# --- limits ----------------------------------------------------------------------------


def raise_open_file_limit(need: int) -> tuple[int, int] | None:
    """Raise the soft open-file limit toward `need`, no higher than the hard
    limit; the (soft, hard) limits after, or None if there is no limit."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    infinite = resource.RLIM_INFINITY
    if soft != infinite and soft < need:
        wanted = need if hard == infinite else min(need, hard)
        if wanted > soft:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
                soft = wanted
            except (ValueError, OSError):
                pass
    if soft == infinite:
        return None
    return soft, hard


def clamp_concurrency(requested: int, log: CliLog) -> int:
    """Keep the associations (one socket each) below the open-file limit:
    raise the soft limit toward the hard one if need be, else use fewer."""
    import resource

    limits = raise_open_file_limit(requested + FD_HEADROOM)
    if limits is None or requested <= limits[0] - FD_HEADROOM:
        return requested
    soft, hard = limits
    allowed = max(1, soft - FD_HEADROOM)
    log.say(
        "warning",
        f"--concurrency {requested} needs more open files than the limit allows "
        f"(ulimit -n: {soft}, hard {'unlimited' if hard == resource.RLIM_INFINITY else hard}): "
        f"using {allowed}",
    )
    return allowed


# --- running ---------------------------------------------------------------------------


def _writer(stream: TextIO, fmt: str, *, header: bool) -> JsonlWriter | CsvWriter:
    from .sweep_output import CsvWriter, JsonlWriter

    return CsvWriter(stream, header=header) if fmt == "csv" else JsonlWriter(stream)


async def run(plan: Plan, log: CliLog, writer: JsonlWriter | CsvWriter) -> int:
    import asyncio
    import signal

    import anyio

    from .sweep_output import ProgressLine, Tally, progress_text, summary_lines
    from .sweeper import sweep

    args = plan.args
    tally = Tally()
    progress = ProgressLine(sys.stderr) if not args.quiet and sys.stderr.isatty() else None
    records_on_terminal = progress is not None and writer.stream.isatty()
    stopped_by = ""
    write_error = False

    def say(level: str, text: str) -> None:
        if progress is not None:
            progress.clear()
        log.say(level, text)

    def stop_for_strict() -> None:
        job.stop()

    targets: Iterable[Target] | AsyncIterator[Target]
    if plan.pipe is not None:
        targets = _pipe_targets(plan, say, stop_for_strict)
    else:
        targets = _file_targets(plan)
    job = sweep(
        targets,
        concurrency=plan.concurrency,
        rate=args.rate,
        deadline=args.deadline,
        calling_ae=args.calling_aet,
        called_ae=args.called_aet,
        max_pdu=args.max_pdu,
        connect_timeout=args.network_timeout,
        acse_timeout=args.acse_timeout,
        dimse_timeout=args.dimse_timeout,
        network_timeout=args.network_timeout,
        ssl=plan.security.ssl if plan.security else None,
        user_identity=plan.security.identity if plan.security else None,
    )

    def on_signal(name: str) -> None:
        nonlocal stopped_by
        stopped_by = stopped_by or name
        job.stop()

    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, on_signal, sig.name)

    async def redraw(line: ProgressLine) -> None:
        while True:
            line.draw(progress_text(tally, plan.total, job.in_flight))
            await anyio.sleep(0.25)

    try:
        async with anyio.create_task_group() as tasks, job as records:
            if progress is not None:
                tasks.start_soon(redraw, progress)
            async for record in records:
                if records_on_terminal and progress is not None:
                    progress.clear()
                try:
                    writer.write(record)
                except OSError as exc:
                    write_error = True
                    if not isinstance(exc, BrokenPipeError):
                        say("error", f"cannot write the records: {exc.strerror or exc}")
                    break
                tally.add(record)
            tasks.cancel_scope.cancel()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        if progress is not None:
            progress.clear()

    if not args.quiet:
        not_started = None
        if stopped_by and plan.total is not None:
            not_started = plan.total - job.started
        for line in summary_lines(
            tally, not_started=not_started, skipped=plan.skipped, stopped=stopped_by
        ):
            print(line, file=sys.stderr)
    if stopped_by:
        return EXIT_INTERRUPTED
    if plan.bad_line:
        return EXIT_USAGE
    if write_error or tally.failed:
        return EXIT_FAILED
    return EXIT_OK


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # before the sweep installed its handlers: nothing started
        return EXIT_INTERRUPTED


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    from .cli_output import CliLog

    log = CliLog("warning")
    plan = Plan(args)
    try:
        plan.security = Security.from_args(args, log)
    except OptionError as exc:
        build_parser().error(str(exc))
    fmt = args.format or ("csv" if (args.output or "").lower().endswith(".csv") else "jsonl")

    if args.resume:
        from .sweep_output import ResumeError, finished_targets

        try:
            with _open_text(args.resume) as earlier:
                plan.done, unreadable = finished_targets(earlier)
        except OSError as exc:
            log.say("error", f"cannot read --resume file {args.resume}: {exc.strerror or exc}")
            return EXIT_USAGE
        except ResumeError as exc:
            log.say("error", f"--resume {args.resume}: {exc}")
            return EXIT_USAGE
        if unreadable:
            log.say("warning", f"--resume {args.resume}: ignored {unreadable} unreadable line(s)")

    try:
        plan.lines, plan.pipe = _open_targets(args.targets)
    except OSError as exc:
        log.say("error", f"cannot read {args.targets}: {exc.strerror or exc}")
        return EXIT_USAGE
    source = plan.lines if plan.lines is not None else plan.pipe
    assert source is not None
    with source:
        if plan.lines is not None:
            start = plan.lines.tell()
            try:
                if not _count(plan, log, plan.lines):
                    return EXIT_USAGE
                plan.lines.seek(start)
            except OSError as exc:
                log.say("error", f"cannot read {args.targets}: {exc.strerror or exc}")
                return EXIT_USAGE
        plan.concurrency = clamp_concurrency(args.concurrency, log)
        return _run_with_output(plan, log, fmt)


def _open_targets(path: str) -> tuple[TextIO | None, IO[bytes] | None]:
    """A regular file as text (it will be read twice), anything else (a
    pipe, a terminal) as bytes for the reader thread."""
    import stat

    if path == "-":
        fd = sys.stdin.fileno()
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return open(fd, encoding="utf-8-sig", errors="replace", newline="", closefd=False), None
        return None, sys.stdin.buffer
    if stat.S_ISREG(os.stat(path).st_mode):
        return _open_text(path), None
    return None, open(path, "rb")


def _run_with_output(plan: Plan, log: CliLog, fmt: str) -> int:
    import asyncio

    args = plan.args
    if not args.output:
        writer = _writer(sys.stdout, fmt, header=True)
        try:
            return asyncio.run(run(plan, log, writer))
        finally:
            _quiet_stdout()
    append = bool(args.resume) and _same_file(args.output, args.resume)
    try:
        out = open(args.output, "a" if append else "w", encoding="utf-8", newline="")  # noqa: SIM115
    except OSError as exc:
        log.say("error", f"cannot write {args.output}: {exc.strerror or exc}")
        return EXIT_USAGE
    with out:
        writer = _writer(out, fmt, header=not (append and out.tell() > 0))
        return asyncio.run(run(plan, log, writer))


def _quiet_stdout() -> None:
    """After a broken pipe, stop Python from complaining at exit while it
    flushes stdout."""
    try:
        sys.stdout.flush()
    except OSError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
