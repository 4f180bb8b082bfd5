"""`asyncecho check`: a monitoring plugin (Nagios, Icinga, Naemon, Zabbix,
CheckMK, Sensu) that follows the Monitoring Plugins Development Guidelines.

One association (associate, C-ECHO, release) through `asyncecho.verify()`;
one line on stdout, `DICOM <STATE> - <what happened> | <perfdata>`, and the
state as the exit status:

    0 OK        the peer answered Success, and the total time is in no
                -w/-c range that alerts
    1 WARNING   Success, but the total time alerts under -w
    2 CRITICAL  the total time alerts under -c; or the connection was refused
                or failed, the association was rejected or aborted, the
                C-ECHO status was not Success, or no answer came within -t
    3 UNKNOWN   the service could not be checked: a usage error or a bad
                range, the host name does not resolve, a limit of this
                machine, an internal error; also -h and -V (as the
                guidelines ask)

Never a traceback, never argparse's exit 2. The perfdata: `time` (total
seconds, with the -w/-c ranges as given and a minimum of 0), then `connect`,
`associate`, `echo`, `release` for each phase that was reached.

Start-up time is part of every check: nothing beyond the client is imported
on the normal path (no structlog, no pydicom).

May import: everything below the CLI (the public API).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

from asyncecho._version import __version__
from asyncecho.cli import argtypes
from asyncecho.cli.ranges import Range, RangeError, perfdata_seconds
from asyncecho.cli.security import (
    OptionError,
    add_client_tls_options,
    add_identity_options,
    client_ssl_from,
    identity_from,
)

if TYPE_CHECKING:
    from ssl import SSLContext

    from asyncecho.exceptions import EchoError
    from asyncecho.protocol.pdu_items import UserIdentityRQ
    from asyncecho.results import EchoResult

PROG = "asyncecho check"
SERVICE = "DICOM"

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
STATE_NAMES = ("OK", "WARNING", "CRITICAL", "UNKNOWN")

#: The guidelines' usual plugin timeout (DEFAULT_SOCKET_TIMEOUT).
DEFAULT_TIMEOUT = 10.0

#: Outcomes that say nothing about the peer: this machine could not check it
#: (the host name does not resolve, or a limit of this machine), UNKNOWN as
#: the Monitoring Plugins' check_tcp reports them.
UNCHECKED_OUTCOMES = frozenset({"dns", "local-error"})

PHASES = ("connect", "associate", "echo", "release")

DESCRIPTION = (
    "Monitoring plugin: verify a DICOM peer with one association and C-ECHO; "
    "one status line with performance data, the state as the exit status."
)
EPILOG = (
    "ranges (-w, -c, on the total time in seconds): 10 alerts outside 0..10, "
    "10: below 10, ~:10 above 10, 10:20 outside 10..20, @10:20 inside 10..20 "
    "(endpoints included). exit status: 0 OK, 1 WARNING, 2 CRITICAL (refused, "
    "rejected, aborted, non-success status, no answer within -t, or -c), "
    "3 UNKNOWN (usage error, bad range, unresolvable host, internal error; "
    "also -h, -V)."
)


class UsageError(Exception):
    """What argparse would have printed before exiting with status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def threshold(text: str) -> Range:
    try:
        return Range.parse(text)
    except RangeError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def timeout(text: str) -> float:
    value = argtypes.seconds(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"the timeout must be more than 0 seconds: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        prefix_chars="-+",
        usage=(
            f"{PROG} -H HOST -p PORT [-aet AET] [-aec AET] [-w RANGE] [-c RANGE] "
            "[-t SECONDS] [-v] [TLS options]"
        ),
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    parser.add_argument("-V", "--version", action="version", version=f"{PROG} v{__version__}")
    parser.add_argument(
        "-H",
        "--hostname",
        required=True,
        type=argtypes.host,
        help="the peer's host name or address",
    )
    parser.add_argument(
        "-p", "--port", required=True, type=argtypes.port, help="the peer's TCP port"
    )
    parser.add_argument(
        "-aet",
        "--calling-aet",
        metavar="AET",
        type=argtypes.ae_title,
        default="ECHOSCU",
        help="my calling AE title (default: ECHOSCU)",
    )
    parser.add_argument(
        "-aec",
        "--called-aet",
        metavar="AET",
        type=argtypes.ae_title,
        default="ANY-SCP",
        help="the peer's AE title (default: ANY-SCP)",
    )
    parser.add_argument(
        "-w",
        "--warning",
        metavar="RANGE",
        type=threshold,
        help="WARNING when the total time in seconds alerts under this range",
    )
    parser.add_argument(
        "-c",
        "--critical",
        metavar="RANGE",
        type=threshold,
        help="CRITICAL when the total time in seconds alerts under this range",
    )
    parser.add_argument(
        "-t",
        "--timeout",
        metavar="SECONDS",
        type=timeout,
        default=DEFAULT_TIMEOUT,
        help=f"CRITICAL if the association, C-ECHO and release take longer "
        f"(default: {DEFAULT_TIMEOUT:g} s)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="-v: the peer's details in the line; -vv: echoscu's log lines on "
        "stderr; -vvv: with the PDUs",
    )
    add_client_tls_options(parser)
    add_identity_options(parser)
    return parser


# --- what happened ----------------------------------------------------------------------


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _phase_reached(result: EchoResult) -> str:
    """The phase that was under way when the association stopped."""
    timings = result.timings
    if timings.connect is None:
        return "TCP connect"
    if timings.associate is None:
        return "association"
    if timings.echo is None:
        return "C-ECHO"
    return "release"


def _failure_text(result: EchoResult, error: EchoError, target: str, seconds: float) -> str:
    from asyncecho import exceptions as ex

    where = _address(result.host, result.port)
    if isinstance(error, ex.EchoTimeout):
        return f"no answer from {target} within {seconds:g} s ({_phase_reached(result)})"
    if isinstance(error, ex.TLSHandshakeFailed):
        return f"TLS handshake with {where} failed: {error.reason}"
    if isinstance(error, (ex.NameResolutionFailed, ex.LocalResourceError)):
        return str(error)
    if isinstance(error, ex.ConnectionFailed):
        return f"cannot connect to {where}: {error.reason}"
    if isinstance(error, ex.AssociationRejected):
        return (
            f"{target} rejected the association: {error.result_name}, "
            f"{error.source_name}: {error.reason_name}"
        )
    return f"{target}: {error}"


def _details(result: EchoResult) -> str:
    """-v: who answered, and how."""
    from asyncecho.protocol.uids import known_uid_name

    parts = []
    if result.peer_ae:
        parts.append(f"peer {result.peer_ae}")
    implementation = result.peer_implementation_version_name or result.peer_implementation_class_uid
    if implementation:
        parts.append(implementation)
    if result.transfer_syntax:
        parts.append(known_uid_name(result.transfer_syntax))
    if result.tls_version:
        parts.append(result.tls_version)
    return f" ({', '.join(parts)})" if parts else ""


def evaluate(result: EchoResult, total: float, args: argparse.Namespace) -> tuple[int, str]:
    """The state and the text before the `|`."""
    target = f"{args.called_aet}@{_address(result.host, result.port)}"
    details = _details(result) if args.verbose else ""
    error = result.error
    if error is not None:
        state = UNKNOWN if error.outcome in UNCHECKED_OUTCOMES else CRITICAL
        return state, _failure_text(result, error, target, args.timeout) + details
    if not result.ok:
        return CRITICAL, (
            f"C-ECHO to {target}: status 0x{result.status or 0:04X} "
            f"({result.status_name}) in {total:.3f} s{details}"
        )
    text = f"C-ECHO to {target}: Success in {total:.3f} s{details}"
    for state, limit, name in (
        (CRITICAL, args.critical, "critical"),
        (WARNING, args.warning, "warning"),
    ):
        if limit is not None and limit.alerts(total):
            return state, f"{text}, time {limit.describe(name)}"
    return OK, text


def perfdata(result: EchoResult, total: float, args: argparse.Namespace) -> str:
    fields = [perfdata_seconds("time", total, warn=args.warning, crit=args.critical)]
    for phase in PHASES:
        seconds = getattr(result.timings, phase)
        if seconds is not None:
            fields.append(perfdata_seconds(phase, seconds))
    return " ".join(fields)


def status_line(state: int, text: str, perf: str = "") -> str:
    # A `|` in the text would start the perfdata, a newline a second line.
    text = " ".join(text.replace("|", "/").split())
    line = f"{SERVICE} {STATE_NAMES[state]} - {text}"
    return f"{line} | {perf}" if perf else line


# --- running it -------------------------------------------------------------------------


async def probe(
    args: argparse.Namespace, ssl: SSLContext | None, identity: UserIdentityRQ | None
) -> tuple[EchoResult, float]:
    """The result, and the total seconds (the library's own count, or ours
    where it has none)."""
    import time

    import asyncecho

    started = time.perf_counter()
    result = await asyncecho.verify(
        args.hostname,
        args.port,
        calling_ae=args.calling_aet,
        called_ae=args.called_aet,
        # -t is the one limit: on the whole association, the connect included
        connect_timeout=None,
        acse_timeout=None,
        dimse_timeout=None,
        network_timeout=None,
        deadline=args.timeout,
        ssl=ssl,
        user_identity=identity,
    )
    total = result.timings.total
    return result, time.perf_counter() - started if total is None else total


def _print(line: str) -> None:
    sys.stdout.write(line + "\n")


def _check(args: argparse.Namespace) -> int:
    from asyncecho.cli.output import CliLog

    level = ("error", "error", "info", "debug")[min(args.verbose, 3)]
    log = CliLog(level)
    if args.verbose >= 2:
        from asyncecho import logs

        logs.enable_logging(log)
    try:
        ssl = client_ssl_from(args, log)
        identity = identity_from(args)
    except OptionError as exc:
        _print(status_line(UNKNOWN, str(exc)))
        return UNKNOWN
    import asyncio

    result, total = asyncio.run(probe(args, ssl, identity))
    state, text = evaluate(result, total, args)
    _print(status_line(state, text, perfdata(result, total, args)))
    return state


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        _print(status_line(UNKNOWN, f"usage error: {exc}"))
        print(parser.format_usage().rstrip(), file=sys.stderr)
        print(f"Try '{PROG} --help' for more.", file=sys.stderr)
        return UNKNOWN
    except SystemExit:  # -h, -V: printed; the guidelines ask for UNKNOWN
        return UNKNOWN
    try:
        return _check(args)
    except Exception as exc:  # a bug of ours is UNKNOWN, never a traceback
        _print(status_line(UNKNOWN, f"internal error: {type(exc).__name__}: {exc}"))
        return UNKNOWN
