"""`asyncecho COMMAND …` / `python -m asyncecho COMMAND …`.

Each command module is imported only when it is the one asked for, and each
imports only what its path needs: start-up time is part of a CLI echo.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from asyncecho._version import __version__

COMMANDS = {
    "echoscu": ("cli.echoscu", "verify DICOM connectivity: one association, C-ECHO, release"),
    "echoscp": ("cli.echoscp", "run a Verification SCP"),
    "demo": ("cli.demo", "start a local SCP and show echoes against it (no PACS needed)"),
    "sweep": ("cli.sweep", "C-ECHO many targets at once (a file, CSV or CIDR), one record each"),
    "merge": ("cli.merge", "combine sweep records (shards, resumed runs): one per target, a summary"),
    "report": ("cli.report", "one self-contained HTML report of sweep records (inventory, latency)"),
    "exporter": ("cli.exporter", "serve C-ECHO probes to Prometheus (/probe, blackbox style)"),
    "check": ("cli.check", "a monitoring plugin (Nagios, Icinga…): one status line, perfdata, exit 0-3"),
}

USAGE = "usage: asyncecho COMMAND [options]   (asyncecho COMMAND --help for each)"


def _help() -> str:
    lines = [USAGE, "", "DICOM Verification (C-ECHO) at scale on one event loop.", "", "commands:"]
    lines += [f"  {name:<10} {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "exit status: 0 success, 1 failure, 2 usage error"]
    return "\n".join(lines)


#: Exit status of an error no command foresaw (reported as one `E:` line):
#: a check that did not run to the end is a failure, never a success.
EXIT_UNEXPECTED = 1
EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = _main(argv)
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader of stdout went away (`| head`): nothing to say
        _flush_stdout()
        code = EXIT_UNEXPECTED
    except Exception as exc:  # the CLI never shows a traceback
        _say_error(_describe(exc))
        code = EXIT_UNEXPECTED
    # Flushed here, not at interpreter exit, so that a full disk or a closed
    # reader of stdout is one line and an exit status, not an ignored traceback.
    if not _flush_stdout() and code == 0:
        code = EXIT_UNEXPECTED
    return code


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return f"unexpected error: {type(exc).__name__}: {exc}"


def _say_error(text: str) -> None:
    stream = sys.stderr
    if stream is None:  # started with stderr closed
        return
    try:
        stream.write(f"E: {text}\n")
        stream.flush()
    except (OSError, ValueError):
        pass


def _flush_stdout() -> bool:
    """False if what was printed could not all be written; stdout is then
    pointed at /dev/null so that Python's own flush at exit stays quiet."""
    import os

    stream = sys.stdout
    if stream is None:
        return True
    try:
        stream.flush()
    except BrokenPipeError:  # the reader went away (`| head`): not worth a line
        pass
    except (OSError, ValueError) as exc:
        _say_error(f"cannot write to standard output: {_describe(exc)}")
    else:
        return True
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    return False


def _main(argv: Sequence[str] | None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        # asked-for help goes to stdout; help for a usage error to stderr
        print(_help(), file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    if args[0] == "--version":
        print(f"asyncecho {__version__}")
        return 0
    entry = COMMANDS.get(args[0])
    if entry is None:
        print(
            f"{USAGE}\nasyncecho: error: unknown command {args[0]!r} (choose from {', '.join(COMMANDS)})",
            file=sys.stderr,
        )
        return 2
    from importlib import import_module

    module = import_module(f".{entry[0]}", __package__)
    try:
        code: int = module.main(args[1:])
    except SystemExit as exc:  # argparse: --help, --version (0) and usage errors (2)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    return code


if __name__ == "__main__":
    sys.exit(main())
