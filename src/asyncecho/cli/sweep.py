"""`asyncecho sweep TARGETS`: C-ECHO every target of a file, many at once,
one record per target (JSONL or CSV), a summary on stderr.

A regular target file is read twice: once to report bad lines and count the
targets (for `--strict`, before anything starts, and for the progress
line's total), then again as the sweep pulls targets. Standard input is read
once, as the sweep goes, with no total.

Exit status: 0 if every target succeeded; 1 if any failed or the records
could not be written; 2 for usage errors (a bad option, an unreadable file,
a bad line with `--strict`, nothing to check); 130 when stopped by
SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, TextIO

from asyncecho._version import __version__
from asyncecho.cli import argtypes
from asyncecho.cli.echoscu import Security, add_ae_options, add_timeouts
from asyncecho.cli.security import OptionError, add_client_tls_options, add_identity_options

if TYPE_CHECKING:
    from asyncecho.cli.output import CliLog
    from asyncecho.sweeps.engine import Target
    from asyncecho.sweeps.output import CsvWriter, EarlierOutput, JsonlWriter, Tally, TargetKey
    from asyncecho.sweeps.targets import TargetLine, TargetParser

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

exit status: 0 if every target succeeded; 1 if any failed or the records could
not be written; 2 for usage errors (including a bad line with --strict, and
nothing to check: no target, or every line bad); 130 when stopped by
SIGINT/SIGTERM (the in-flight targets are recorded as cancelled; --resume
finishes the rest). With --resume, the summary and the status cover the
earlier records too."""


def _positive_float(text: str) -> float:
    value = argtypes.seconds(text)  # finite, at most argtypes.MAX_SECONDS
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0: {text!r}")
    return value


def _rate(text: str) -> float:
    """Associations per second: finite, and not so low that the pause
    between two starts exceeds the longest limit an option takes."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid rate: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number: {text!r}")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0: {text!r}")
    if value < 1.0 / argtypes.MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"must be at least {1.0 / argtypes.MAX_SECONDS:.3g}: {text!r}")
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
        type=argtypes.port,
        default=104,
        help="port of targets that give none (default: 104)",
    )
    targets.add_argument(
        "--max-cidr-hosts",
        metavar="[n]umber",
        type=argtypes.positive,
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
        "FILE, the output of an earlier sweep; the output starts with those "
        "records (one per target), then the new ones; -o FILE rewrites FILE",
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
        type=argtypes.positive,
        default=256,
        help="at most n associations at once (default: 256; kept below the open-file limit)",
    )
    sweep.add_argument(
        "--rate",
        metavar="[n]umber",
        type=_rate,
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
    earlier: EarlierOutput | None = None  # --resume: the earlier output
    skipped: int = 0
    found: int = 0  # targets met on a pipe, skipped ones included
    concurrency: int = 256
    bad_line: str = ""  # set when --strict met a bad line on a pipe
    security: Security | None = None  # TLS context and user identity


def _open_text(path: str) -> TextIO:
    # utf-8-sig: files saved by spreadsheets start with a BOM; a stray byte
    # becomes U+FFFD and so a bad line, never a traceback.
    return open(path, encoding="utf-8-sig", errors="replace", newline="")


def _parser(args: argparse.Namespace) -> TargetParser:
    from asyncecho.sweeps.targets import TargetParser

    return TargetParser(
        port=args.port,
        called_ae=args.called_aet,
        calling_ae=args.calling_aet,
        max_cidr_hosts=args.max_cidr_hosts,
    )


def _count(plan: Plan, log: CliLog, lines: Iterable[str]) -> bool:
    """First pass over a regular file: report bad lines, count the targets
    still to do. False if --strict met a bad line or the file names no
    target at all."""
    from asyncecho.sweeps.targets import BadLine

    args = plan.args
    parser = _parser(args)
    done = _DoneIndex(plan.done)
    total = skipped = bad = 0
    for raw in lines:
        entry = parser.feed(raw)
        if entry is None:
            continue
        if isinstance(entry, BadLine):
            bad += 1
            log.say("error" if args.strict else "warning", f"{args.targets}: {entry}")
            continue
        already = done.count_in(entry)
        total += entry.count - already
        skipped += already
    plan.total, plan.skipped = total, skipped
    if bad and args.strict:
        log.say("error", f"{args.targets}: {bad} bad line(s); nothing was checked (--strict)")
        return False
    if not total and not skipped:
        # A sweep that checked nothing must not look like one that passed.
        why = f"every line of it is bad ({bad} bad line(s))" if bad else "it names no target"
        log.say("error", f"{args.targets}: nothing to check: {why}")
        return False
    if bad:
        log.say("warning", f"{args.targets}: skipped {bad} bad line(s)")
    return True


class _DoneIndex:
    """The --resume file's done targets, asked per target line without
    expanding a CIDR block: a single host is one look-up, a block is tested
    against the done addresses with its port and AE titles (a set bounded by
    the --resume file, not by the block)."""

    def __init__(self, done: set[TargetKey]) -> None:
        import ipaddress

        self.done = done
        self._addresses: dict[
            tuple[int, str | None, str | None],
            list[ipaddress.IPv4Address | ipaddress.IPv6Address],
        ] = {}
        for host, port, called, calling in done:
            try:
                address = ipaddress.ip_address(host)
            except ValueError:
                continue
            self._addresses.setdefault((port, called, calling), []).append(address)

    def count_in(self, entry: TargetLine) -> int:
        if not self.done:
            return 0
        host = entry.host
        if isinstance(host, str):
            return sum(1 for target in entry.targets() if target.key in self.done)
        from asyncecho.sweeps.targets import is_block_host

        addresses = self._addresses.get((entry.port, entry.called_ae, entry.calling_ae), ())
        return sum(1 for address in addresses if is_block_host(address, host))


def _file_targets(plan: Plan) -> Iterator[Target]:
    from asyncecho.sweeps.targets import TargetLine

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
    from asyncecho.sweeps.targets import BadLine

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
            plan.found += 1
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
    from asyncecho.sweeps.output import CsvWriter, JsonlWriter

    return CsvWriter(stream, header=header) if fmt == "csv" else JsonlWriter(stream)


class _Output:
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


async def run(plan: Plan, log: CliLog, output: _Output, tally: Tally) -> int:
    import asyncio
    import signal

    import anyio

    from asyncecho.collector import tune_collector
    from asyncecho.sweeps.engine import sweep
    from asyncecho.sweeps.output import ProgressLine, progress_text, summary_lines

    tune_collector()  # start-up is done: see asyncecho.collector
    args = plan.args
    writer = output.writer
    progress = ProgressLine(sys.stderr) if not args.quiet and sys.stderr.isatty() else None
    records_on_terminal = progress is not None and writer.stream.isatty()
    stopped_by = ""

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
                    if progress is not None:
                        progress.clear()
                    output.write_error(log, exc)
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
            tally,
            not_started=not_started,
            stopped=stopped_by,
            resume_hint=output.resume_hint,
            resumed_from=args.resume or "",
        ):
            print(line, file=sys.stderr)
    if stopped_by:
        return EXIT_INTERRUPTED
    if plan.bad_line:
        return EXIT_USAGE
    if plan.pipe is not None and not plan.found and not output.failed:
        # A sweep that checked nothing must not look like one that passed.
        log.say("error", f"{args.targets}: nothing to check: no target was read")
        return EXIT_USAGE
    if output.failed or tally.failed:
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
    from asyncecho.cli.output import CliLog

    log = CliLog("warning")
    plan = Plan(args)
    try:
        plan.security = Security.from_args(args, log)
    except OptionError as exc:
        build_parser().error(str(exc))
    fmt = args.format or ("csv" if (args.output or "").lower().endswith(".csv") else "jsonl")
    if not args.output and sys.stdout is None:
        log.say("error", "standard output is closed: name an output file with -o FILE")
        return EXIT_USAGE

    if args.output and args.targets != "-" and _same_file(args.output, args.targets):
        log.say("error", f"-o {args.output} is the target file: writing would destroy it")
        return EXIT_USAGE

    if args.resume:
        from asyncecho.sweeps.output import EarlierOutput, ResumeError

        earlier = EarlierOutput(args.resume)
        try:
            earlier.scan()
        except OSError as exc:
            log.say("error", f"cannot read --resume file {args.resume}: {exc.strerror or exc}")
            return EXIT_USAGE
        except ResumeError as exc:
            log.say("error", f"--resume {args.resume}: {exc}")
            return EXIT_USAGE
        if earlier.unreadable:
            log.say(
                "warning",
                f"--resume {args.resume}: left out {earlier.unreadable} unreadable line(s) "
                "(a line cut short by a crash, say); their targets are checked again",
            )
        plan.earlier, plan.done = earlier, earlier.done

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
    import errno
    import stat

    if path == "-":
        if sys.stdin is None:  # started with standard input closed (`<&-`)
            raise OSError(errno.EBADF, "standard input is closed")
        fd = sys.stdin.fileno()
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return open(fd, encoding="utf-8-sig", errors="replace", newline="", closefd=False), None
        return None, sys.stdin.buffer
    if stat.S_ISREG(os.stat(path).st_mode):
        return _open_text(path), None
    return None, open(path, "rb")


def _run_with_output(plan: Plan, log: CliLog, fmt: str) -> int:
    """Open the output, carry the --resume file's final records over into
    it (so that a resumed run ends with one final record per target), then
    sweep. With -o naming the --resume file, the file is first rewritten
    through a temporary file and os.replace(): a crash while it is written
    leaves the earlier output as it was."""
    import asyncio
    import shlex

    from asyncecho.sweeps.output import Tally

    args = plan.args
    tally = Tally()
    if not args.output:
        output = _Output(
            _writer(sys.stdout, fmt, header=True),
            "standard output",
            "save the records and pass them to --resume to check the rest",
        )
        try:
            if not _carry_over(plan, log, output, tally):
                return EXIT_FAILED
            return asyncio.run(run(plan, log, output, tally))
        finally:
            _quiet_stdout()

    path = args.output
    in_place = bool(args.resume) and _same_file(path, args.resume)
    quoted = shlex.quote(path)
    hint = f"--resume {quoted} -o {quoted} checks the rest"
    try:
        out, temporary = _open_output(path, in_place)
    except OSError as exc:
        log.say("error", f"cannot write {path}: {exc.strerror or exc}")
        return EXIT_USAGE
    output = _Output(_writer(out, fmt, header=True), path, hint)
    code = EXIT_FAILED
    try:
        if not _carry_over(plan, log, output, tally):
            return EXIT_FAILED
        if in_place:
            try:
                os.replace(temporary, path)
            except OSError as exc:
                log.say("error", f"cannot write {path}: {exc.strerror or exc}")
                return EXIT_FAILED
            in_place = False  # replaced: the temporary file is the output now
        code = asyncio.run(run(plan, log, output, tally))
    finally:
        try:
            out.close()
        except OSError as exc:
            if not output.failed:
                output.write_error(log, exc)
                code = EXIT_FAILED
        if in_place:  # not replaced: the earlier output stays as it was
            try:
                os.unlink(temporary)
            except OSError:
                pass
    return code


def _open_output(path: str, in_place: bool) -> tuple[TextIO, str]:
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


def _carry_over(plan: Plan, log: CliLog, output: _Output, tally: Tally) -> bool:
    """The header, then the --resume file's final records; False (said) on
    a read or write error."""
    writer = output.writer
    earlier = plan.earlier
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


def _quiet_stdout() -> None:
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
