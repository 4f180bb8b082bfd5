"""`asyncecho COMMAND …` / `python -m asyncecho COMMAND …`.

Each command module is imported only when it is the one asked for, and each
imports only what its path needs: start-up time is part of a CLI echo.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ._version import __version__

COMMANDS = {
    "echoscu": ("cli_echoscu", "verify DICOM connectivity: one association, C-ECHO, release"),
    "echoscp": ("cli_echoscp", "run a Verification SCP"),
    "demo": ("cli_demo", "start a local SCP and show echoes against it (no PACS needed)"),
    "sweep": ("cli_sweep", "C-ECHO many targets at once (a file, CSV or CIDR), one record each"),
}

USAGE = "usage: asyncecho COMMAND [options]   (asyncecho COMMAND --help for each)"


def _help() -> str:
    lines = [USAGE, "", "DICOM Verification (C-ECHO) at scale on one event loop.", "", "commands:"]
    lines += [f"  {name:<10} {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "exit status: 0 success, 1 failure, 2 usage error"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
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
