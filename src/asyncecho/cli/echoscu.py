"""`asyncecho echoscu`: a drop-in for pynetdicom's echoscu
(shared/seed/echoscu.md), over `associate()`.

Exit status: 0 only if every echo returned Success; 1 for any association,
network or DIMSE failure or a non-success status; 2 for usage errors.

`--json` (for scripts): one JSON object per association on stdout, with the
sweep record's fields (`SweepRecord.as_dict()`, as `asyncecho sweep` writes
them) and `tls_version`; nothing else on stdout, the log lines on stderr as
without it, the same exit status.

May import the public API (`client`, `association`, `results`, `exceptions`,
`protocol` names for the output) and the CLI's shared modules; pydicom and
structlog only on the paths that need them (`-d`, `-v`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING

from asyncecho._version import __version__
from asyncecho.cli import argtypes
from asyncecho.cli.security import (
    OptionError,
    add_client_tls_options,
    add_identity_options,
    client_ssl_from,
    identity_from,
)
from asyncecho.protocol import uids

if TYPE_CHECKING:
    from datetime import datetime
    from ssl import SSLContext

    from asyncecho.cli.output import CliLog
    from asyncecho.client import EchoOptions
    from asyncecho.exceptions import EchoError
    from asyncecho.protocol.pdu_items import UserIdentityRQ
    from asyncecho.results import EchoResult

PROG = "echoscu"


class Security:
    """The TLS context and user identity the options ask for."""

    def __init__(self, ssl: SSLContext | None, identity: UserIdentityRQ | None) -> None:
        self.ssl = ssl
        self.identity = identity

    @classmethod
    def from_args(cls, args: argparse.Namespace, log: CliLog) -> Security:
        return cls(client_ssl_from(args, log), identity_from(args))


EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

DESCRIPTION = (
    "The echoscu application implements a Service Class User (SCU) for the "
    "Verification Service Class. It sends a DICOM C-ECHO message to a Service "
    "Class Provider (SCP) and waits for a response. The application can be "
    "used to verify basic DICOM connectivity."
)
EPILOG = (
    "exit status: 0 if every echo returned Success; 1 if the association, the "
    "network or any echo failed (including a non-success status); 2 for "
    "usage errors."
)


def add_logging_options(group: argparse._ArgumentGroup) -> None:
    verbosity = group.add_mutually_exclusive_group()
    verbosity.add_argument(
        "-q", "--quiet", action="store_true", help="quiet mode, print no warnings and errors"
    )
    verbosity.add_argument(
        "-v", "--verbose", action="store_true", help="verbose mode, print processing details"
    )
    verbosity.add_argument(
        "-d", "--debug", action="store_true", help="debug mode, print debug information"
    )
    group.add_argument(
        "-ll",
        "--log-level",
        metavar="[l]",
        type=str.lower,
        choices=["critical", "error", "warn", "warning", "info", "debug"],
        help="use level l for the logger (critical, error, warn, info, debug)",
    )


def add_timeouts(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "-ta",
        "--acse-timeout",
        metavar="[s]econds",
        type=argtypes.seconds,
        default=30.0,
        help="timeout for ACSE messages (default: 30 s)",
    )
    group.add_argument(
        "-td",
        "--dimse-timeout",
        metavar="[s]econds",
        type=argtypes.seconds,
        default=30.0,
        help="timeout for DIMSE messages (default: 30 s)",
    )
    group.add_argument(
        "-tn",
        "--network-timeout",
        metavar="[s]econds",
        type=argtypes.seconds,
        default=30.0,
        help="timeout for the network, the TCP connect included (default: 30 s)",
    )
    group.add_argument(
        "-pdu",
        "--max-pdu",
        metavar="[n]umber of bytes",
        type=argtypes.pdu_length,
        default=16382,
        help="set max receive pdu to n bytes (0 for unlimited, default: 16382)",
    )


def add_ae_options(group: argparse._ArgumentGroup, *, called_help: str) -> None:
    group.add_argument(
        "-aet",
        "--calling-aet",
        metavar="[a]etitle",
        type=argtypes.ae_title,
        default="ECHOSCU",
        help="set my calling AE title (default: ECHOSCU)",
    )
    group.add_argument(
        "-aec", "--called-aet", metavar="[a]etitle", type=argtypes.ae_title, default="ANY-SCP", help=called_help
    )


_SYNTAX_FLAGS = (
    ("-xe", uids.EXPLICIT_VR_LE, "explicit VR little endian"),
    ("-xb", uids.EXPLICIT_VR_BE, "explicit VR big endian"),
    ("-xi", uids.IMPLICIT_VR_LE, "implicit VR little endian"),
)


def add_syntax_options(
    parser: argparse.ArgumentParser, *, verb: str, long_names: tuple[str, str, str]
) -> None:
    """-xe / -xb / -xi: one transfer syntax only (`args.syntax`, else None)."""
    group = parser.add_argument_group("Transfer Syntax Options").add_mutually_exclusive_group()
    for (flag, uid, label), long_name in zip(_SYNTAX_FLAGS, long_names, strict=True):
        group.add_argument(
            flag,
            long_name,
            action="store_const",
            dest="syntax",
            const=uid,
            help=f"{verb} {label} TS only",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        prefix_chars="-+",
        usage=f"{PROG} [options] addr port",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    params = parser.add_argument_group("Parameters")
    params.add_argument("addr", type=argtypes.host, help="TCP/IP address of DICOM peer")
    params.add_argument("port", type=argtypes.port, help="TCP/IP port number of peer")

    general = parser.add_argument_group("General Options")
    general.add_argument(
        "--version",
        action="version",
        version=f"asyncecho {PROG} v{__version__}",
        help="print version information and exit",
    )
    add_logging_options(general)

    network = parser.add_argument_group("Network Options")
    add_ae_options(network, called_help="set called AE title of peer (default: ANY-SCP)")
    add_timeouts(network)

    add_syntax_options(
        parser,
        verb="request",
        long_names=("--request-little", "--request-big", "--request-implicit"),
    )

    misc = parser.add_argument_group("Miscellaneous Options")
    misc.add_argument(
        "--repeat",
        metavar="[n]umber",
        type=argtypes.positive,
        default=1,
        help="repeat echo request n times (on one association, message IDs 1..n)",
    )
    misc.add_argument(
        "--abort", action="store_true", help="abort association instead of releasing it"
    )
    misc.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per association on stdout (the fields of "
        "asyncecho sweep's records, and tls_version); nothing else on stdout",
    )
    add_client_tls_options(parser)
    add_identity_options(parser)
    return parser


def log_level(args: argparse.Namespace) -> str:
    if args.quiet:
        return "critical"
    if args.debug:
        return "debug"
    if args.verbose:
        return "info"
    if args.log_level:
        return "warning" if args.log_level == "warn" else str(args.log_level)
    return "error"


#: After our own limit fired or the peer broke the protocol, it is this side
#: that ends the association (PS3.8 9.2.1, A-ABORT request, AA-1/AA-8): echoscu's
#: bare "Association Aborted" reads as if the peer had aborted it.
LOCAL_ABORT = "Association Aborted by this side (A-ABORT sent, the connection closed)"


def report_error(log: CliLog, error: EchoError) -> None:
    """The `E:` lines for a failure, in echoscu's words where it has them."""
    from asyncecho import exceptions as ex

    if isinstance(error, ex.AssociationRejected):
        log.say("error", "Association Rejected")
        log.say("error", f"Result: {error.result_name}, Source: {error.source_name}")
        log.say("error", f"Reason: {error.reason_name}")
    elif isinstance(error, ex.NoAcceptedContext):
        log.say("error", "No accepted presentation contexts")
    elif isinstance(error, ex.ConnectTimeout):
        log.say("error", "Association request failed: unable to connect to remote")
        log.say("error", f"TCP Initialisation Error: {error}")
    elif isinstance(error, ex.ConnectionFailed):
        log.say("error", "Association request failed: unable to connect to remote")
        reason = error.reason
        if isinstance(error, ex.NameResolutionFailed):
            reason = f"{reason} (cannot resolve {error.host!r})"
        elif isinstance(error, ex.TLSHandshakeFailed):
            reason = str(error)
        log.say("error", f"TCP Initialisation Error: {reason}")
    elif isinstance(error, ex.LocalResourceError):
        log.say("error", "Association request failed: unable to connect to remote")
        log.say("error", f"TCP Initialisation Error: {error.reason} (a limit of this machine)")
    elif isinstance(error, ex.AcseTimeout):
        log.say("error", f"ACSE timeout reached: {error}")
        log.say("error", LOCAL_ABORT)
    elif isinstance(error, ex.DimseTimeout):
        log.say("error", f"DIMSE timeout reached: {error}")
        log.say("error", LOCAL_ABORT)
    elif isinstance(error, (ex.NetworkTimeout, ex.DeadlineExceeded)):
        log.say("error", f"Network timeout reached: {error}")
        log.say("error", LOCAL_ABORT)
    elif isinstance(error, ex.ProtocolError):
        log.say("error", f"Protocol error: {error}")
        log.say("error", LOCAL_ABORT)
    elif isinstance(error, ex.AssociationAborted):
        log.say("error", "Association Aborted")
        log.say("error", f"Reason: {error}")
    else:  # pragma: no cover - every EchoError subclass is handled above
        log.say("error", str(error))


def echo_options(args: argparse.Namespace, security: Security) -> EchoOptions:
    from asyncecho.client import EchoOptions

    return EchoOptions(
        ssl=security.ssl,
        user_identity=security.identity,
        calling_ae=args.calling_aet,
        called_ae=args.called_aet,
        transfer_syntaxes=(args.syntax,) if args.syntax else uids.DEFAULT_TRANSFER_SYNTAXES,
        max_pdu=args.max_pdu,
        connect_timeout=args.network_timeout,
        acse_timeout=args.acse_timeout,
        dimse_timeout=args.dimse_timeout,
        network_timeout=args.network_timeout,
    )


def report_status(log: CliLog, status: int) -> None:
    """A non-success status, said once: at -v the response's own line says it."""
    from asyncecho.protocol.dimse import status_name

    if not log.enabled_for("info"):
        log.say("error", f"Received Echo Response (Status: 0x{status:04X} - {status_name(status)})")


async def run(args: argparse.Namespace, log: CliLog, security: Security) -> int:
    from asyncecho.client import associate
    from asyncecho.exceptions import EchoError
    from asyncecho.protocol.dimse import STATUS_SUCCESS

    if args.json:
        return await run_json(args, log, security)
    failed = False
    try:
        async with associate(args.addr, args.port, options=echo_options(args, security)) as assoc:
            for _ in range(args.repeat):
                status = await assoc.echo()
                if status != STATUS_SUCCESS:
                    failed = True
                    report_status(log, status)
            if args.abort:
                await assoc.abort()
    except EchoError as error:
        report_error(log, error)
        return EXIT_FAILED
    return EXIT_FAILED if failed else EXIT_OK


# --- --json ---------------------------------------------------------------------------


async def run_json(args: argparse.Namespace, log: CliLog, security: Security) -> int:
    """The association as one JSON object on stdout; the log lines and the
    exit status as `run()` has them."""
    from datetime import datetime, timezone

    started = datetime.now(timezone.utc)
    if args.repeat == 1 and not args.abort:
        # verify() keeps the timings of the phases a failure got through
        import asyncecho

        result = await asyncecho.verify(args.addr, args.port, options=echo_options(args, security))
    else:
        result = await _associated_result(args, security)
    if result.error is not None:
        report_error(log, result.error)
    elif result.status is not None and not result.ok:
        report_status(log, result.status)
    print(json_record(args, started, result), flush=True)
    return EXIT_OK if result.ok else EXIT_FAILED


async def _associated_result(args: argparse.Namespace, security: Security) -> EchoResult:
    """--repeat / --abort on one association: its result, the status the
    first non-success one (else the last), the echo time that of all the
    echoes; a failure's result has the timings of the phases it got through
    once the association was established (before that, only the total)."""
    import time
    from dataclasses import replace

    from asyncecho.association import Association
    from asyncecho.client import associate
    from asyncecho.exceptions import EchoError
    from asyncecho.protocol.dimse import STATUS_SUCCESS
    from asyncecho.results import EchoResult, Timings

    began = time.perf_counter()
    held: Association | None = None
    status: int | None = None
    echo_time: float | None = None
    error: EchoError | None = None
    try:
        async with associate(args.addr, args.port, options=echo_options(args, security)) as assoc:
            held = assoc
            echoes_began = time.perf_counter()
            for _ in range(args.repeat):
                answer = await assoc.echo()
                if status is None or status == STATUS_SUCCESS:
                    status = answer
            echo_time = time.perf_counter() - echoes_began
            if args.abort:
                await assoc.abort()
    except EchoError as exc:
        error = exc
    total = time.perf_counter() - began
    if held is None:
        return EchoResult(args.addr, args.port, timings=Timings(total=total), error=error)
    result = held.result(error)
    return replace(
        result,
        status=status,
        message_id=None,
        timings=replace(result.timings, echo=echo_time, total=total),
    )


def json_record(args: argparse.Namespace, started: datetime, result: EchoResult) -> str:
    """The sweep record's JSON for this association (`SweepRecord.as_dict()`,
    the same fields and serialisation as `asyncecho sweep` writes), with the
    TLS version the record has no field for."""
    import json

    from asyncecho import Target
    from asyncecho.sweeps.records import record_from_result

    target = Target(args.addr, args.port, args.called_aet, args.calling_aet)
    record = record_from_result(target, started, result)
    return json.dumps({**record.as_dict(), "tls_version": result.tls_version})


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from asyncecho.cli.output import CliLog

    log = CliLog(log_level(args))
    if log.enabled_for("info"):
        from asyncecho import logs

        logs.enable_logging(log)
    if log.debug_on:
        log.say("debug", f"asyncecho {PROG} v{__version__}")
        log.say("debug", "")
    try:
        security = Security.from_args(args, log)
    except OptionError as exc:
        build_parser().error(str(exc))
    import asyncio

    try:
        return asyncio.run(run(args, log, security))
    except KeyboardInterrupt:
        return 130
