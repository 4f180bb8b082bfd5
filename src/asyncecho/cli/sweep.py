"""`asyncecho sweep TARGETS`: C-ECHO every target of a file, many at once,
one record per target (JSONL or CSV), a summary on stderr.

A regular target file is read twice: once to report bad lines and count the
targets (for `--strict`, before anything starts, and for the progress
line's total), then again as the sweep pulls targets. Standard input is read
once, as the sweep goes, with no total.

Exit status: 0 if every target succeeded (with `--exit-zero`, whatever the
targets said); 1 if any failed or the records could not be written; 2 for usage errors (a bad option, an unreadable file,
a bad line with `--strict`, nothing to check); 130 when stopped by
SIGINT/SIGTERM.

Holds main() and the run itself (signals, progress, summary, exit status)
and the open-file limit the command raises; the options are in
`cli.sweep_args`, the target input in `cli.sweep_input`, the record output
in `cli.sweep_output`.

May import: the other `cli.sweep_*` modules, the CLI's shared helpers,
`asyncecho.sweeps` and the public API (`asyncecho.collector`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from asyncecho.cli.echoscu import Security
from asyncecho.cli.security import OptionError
from asyncecho.cli.sweep_args import build_parser
from asyncecho.cli.sweep_input import Plan, count_targets, file_targets, open_targets, pipe_targets
from asyncecho.cli.sweep_output import (
    RecordOutput,
    carry_over,
    open_output,
    quiet_stdout,
    record_writer,
    same_file,
)

if TYPE_CHECKING:
    from asyncecho.cli.output import CliLog
    from asyncecho.sweeps.records import Target
    from asyncecho.sweeps.summary import Tally

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

#: File descriptors kept free beside the associations: standard streams,
#: the output file, the event loop's own, resolver threads.
FD_HEADROOM = 100


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


async def run(
    plan: Plan,
    log: CliLog,
    output: RecordOutput,
    tally: Tally,
    rows: list[dict[str, Any]] | None = None,
) -> int:
    """The sweep; with `rows`, each record written is also kept there (for
    --report)."""
    import asyncio
    import signal

    import anyio

    from asyncecho.collector import tune_collector
    from asyncecho.sweeps.engine import sweep
    from asyncecho.sweeps.summary import ProgressLine, progress_text, summary_lines

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
        targets = pipe_targets(plan, say, stop_for_strict)
    else:
        targets = file_targets(plan)
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
                if rows is not None:
                    rows.append(record.as_dict())
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
    if output.failed or (tally.failed and not args.exit_zero):
        return EXIT_FAILED
    return EXIT_OK


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

    if args.output and args.targets != "-" and same_file(args.output, args.targets):
        log.say("error", f"-o {args.output} is the target file: writing would destroy it")
        return EXIT_USAGE

    if args.report and not _report_possible(args, log):
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
        plan.lines, plan.pipe = open_targets(args.targets)
    except OSError as exc:
        log.say("error", f"cannot read {args.targets}: {exc.strerror or exc}")
        return EXIT_USAGE
    source = plan.lines if plan.lines is not None else plan.pipe
    assert source is not None
    with source:
        if plan.lines is not None:
            start = plan.lines.tell()
            try:
                if not count_targets(plan, log, plan.lines):
                    return EXIT_USAGE
                plan.lines.seek(start)
            except OSError as exc:
                log.say("error", f"cannot read {args.targets}: {exc.strerror or exc}")
                return EXIT_USAGE
        plan.concurrency = clamp_concurrency(args.concurrency, log)
        return _run_with_output(plan, log, fmt)


def _run_with_output(plan: Plan, log: CliLog, fmt: str) -> int:
    """Open the output, carry the --resume file's final records over into
    it (so that a resumed run ends with one final record per target), then
    sweep. With -o naming the --resume file, the file is first rewritten
    through a temporary file and os.replace(): a crash while it is written
    leaves the earlier output as it was."""
    import asyncio
    import shlex

    from asyncecho.sweeps.summary import Tally

    args = plan.args
    tally = Tally()
    rows = _carried_rows(plan) if args.report else None
    if not args.output:
        output = RecordOutput(
            record_writer(sys.stdout, fmt, header=True),
            "standard output",
            "save the records and pass them to --resume to check the rest",
        )
        try:
            if not carry_over(plan.earlier, log, output, tally):
                return EXIT_FAILED
            code = asyncio.run(run(plan, log, output, tally, rows))
        finally:
            quiet_stdout()
        return _with_report(plan, log, rows, code)

    path = args.output
    in_place = bool(args.resume) and same_file(path, args.resume)
    quoted = shlex.quote(path)
    hint = f"--resume {quoted} -o {quoted} checks the rest"
    try:
        out, temporary = open_output(path, in_place)
    except OSError as exc:
        log.say("error", f"cannot write {path}: {exc.strerror or exc}")
        return EXIT_USAGE
    output = RecordOutput(record_writer(out, fmt, header=True), path, hint)
    code = EXIT_FAILED
    try:
        if not carry_over(plan.earlier, log, output, tally):
            return EXIT_FAILED
        if in_place:
            try:
                os.replace(temporary, path)
            except OSError as exc:
                log.say("error", f"cannot write {path}: {exc.strerror or exc}")
                return EXIT_FAILED
            in_place = False  # replaced: the temporary file is the output now
        code = asyncio.run(run(plan, log, output, tally, rows))
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
    return _with_report(plan, log, rows, code)


# --- --report ------------------------------------------------------------------------


def _report_possible(args: Any, log: CliLog) -> bool:
    """Before the sweep: Jinja2 is there, and the report would destroy no
    file of the sweep and can be written where it is asked for."""
    from asyncecho.report import missing

    problem = missing()
    if problem:
        log.say("error", f"--report: {problem}")
        return False
    path = os.path.abspath(args.report)
    for name, option in (
        (args.targets, "the target file"),
        (args.output, "-o"),
        (args.resume, "--resume"),
    ):
        if name and name != "-" and (path == os.path.abspath(name) or same_file(path, name)):
            log.say("error", f"--report {args.report} is {option}: writing would destroy it")
            return False
    if not os.access(os.path.dirname(path), os.W_OK):
        log.say("error", f"--report {args.report}: cannot write in {os.path.dirname(path)}")
        return False
    return True


def _carried_rows(plan: Plan) -> list[dict[str, Any]]:
    """The --resume file's kept records, which start the output (carry_over
    reports a read error)."""
    if plan.earlier is None:
        return []
    try:
        return list(plan.earlier.rows())
    except OSError:
        return []


def _with_report(plan: Plan, log: CliLog, rows: list[dict[str, Any]] | None, code: int) -> int:
    """After the output is complete: the report from the same records; a
    report that cannot be written fails a sweep that would have passed."""
    if rows is None or not rows:
        return code
    from asyncecho.cli.report import write_report

    args = plan.args
    if not write_report(args.report, rows, log, sources=[args.targets], quiet=args.quiet):
        return EXIT_FAILED if code == EXIT_OK else code
    return code
