"""`asyncecho echoscp PORT`: a Verification SCP on `serve()`, logging in
echoscu's `I:`/`W:`/`E:`/`D:` style. By default it says when it starts and
stops listening, and every refusal, abort and error (an SCP's log is read
later); -v adds each association, -d the requests, -q prints nothing;
--timestamps puts the UTC time before each line. SIGINT/SIGTERM stop it
cleanly: in-flight associations are aborted, nothing is left listening, exit 0.

May import the public API (`server`, `collector`) and the CLI's shared
modules.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from asyncecho._version import __version__
from asyncecho.cli import argtypes
from asyncecho.cli.echoscu import add_logging_options, add_syntax_options, add_timeouts, log_level
from asyncecho.cli.security import OptionError, add_server_tls_options, server_ssl_from

if TYPE_CHECKING:
    from asyncecho.cli.output import CliLog
    from asyncecho.server import ServerOptions

PROG = "echoscp"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prefix_chars="-+",
        prog=PROG,
        usage=f"{PROG} [options] port",
        description=(
            "The echoscp application implements a Service Class Provider (SCP) for the "
            "Verification Service Class. It answers every C-ECHO request it receives."
        ),
        epilog="exit status: 0 after a clean shutdown (SIGINT/SIGTERM); 1 if it cannot listen; 2 usage.",
    )
    params = parser.add_argument_group("Parameters")
    params.add_argument("port", type=argtypes.port, help="TCP/IP port number to listen on")

    general = parser.add_argument_group("General Options")
    general.add_argument(
        "--version",
        action="version",
        version=f"asyncecho {PROG} v{__version__}",
        help="print version information and exit",
    )
    add_logging_options(general)
    general.add_argument(
        "-ts",
        "--timestamps",
        action="store_true",
        help="begin each line with the time, ISO 8601 in UTC (2026-12-02T04:30:00.123Z)",
    )

    network = parser.add_argument_group("Network Options")
    network.add_argument(
        "-aet",
        "--ae-title",
        metavar="[a]etitle",
        type=argtypes.ae_title,
        default="ANY-SCP",
        help="set my AE title (default: ANY-SCP)",
    )
    network.add_argument(
        "-ba",
        "--bind-address",
        metavar="[a]ddress",
        default="",
        help="the address to listen on (default: all interfaces)",
    )
    network.add_argument(
        "--require-called-aet",
        action="store_true",
        help="reject associations whose called AE title is not mine "
        "(Called AE title not recognised)",
    )
    network.add_argument(
        "--allowed-calling-aet",
        metavar="[a]etitle",
        type=argtypes.ae_title,
        action="append",
        default=[],
        help="accept only this calling AE title (repeat for more; default: any)",
    )
    network.add_argument(
        "--allowed-called-aet",
        metavar="[a]etitle",
        type=argtypes.ae_title,
        action="append",
        default=[],
        help="accept only this called AE title (repeat for more; default: any, or "
        "only mine with --require-called-aet)",
    )
    network.add_argument(
        "--allowed-network",
        metavar="CIDR",
        action="append",
        default=[],
        help="accept connections only from this network (repeat for more; default: any)",
    )
    network.add_argument(
        "--max-associations",
        metavar="[n]umber",
        type=argtypes.positive,  # 0 would refuse every association
        default=10_000,
        help="at most n associations at once; more are rejected as transient "
        "(Local limit exceeded) (default: 10000)",
    )
    add_timeouts(network)

    add_syntax_options(
        parser, verb="accept", long_names=("--prefer-little", "--prefer-big", "--implicit")
    )
    add_server_tls_options(parser)
    return parser


def server_options(args: argparse.Namespace) -> ServerOptions:
    """The options the arguments ask for; ValueError/TypeError as the
    library says what it refuses (a usage error for the command line)."""
    from asyncecho.server import ServerOptions

    settings: dict[str, Any] = {
        "ae_title": args.ae_title,
        "require_called_ae": args.require_called_aet,
        "allowed_calling_aes": frozenset(args.allowed_calling_aet),
        "allowed_called_aes": frozenset(args.allowed_called_aet),
        "allowed_networks": tuple(args.allowed_network),
        "max_associations": args.max_associations,
        "acse_timeout": args.acse_timeout,
        "dimse_timeout": args.dimse_timeout,
        "network_timeout": args.network_timeout,
        "max_pdu": args.max_pdu,
        "ssl": args.ssl,
    }
    if args.syntax:
        settings["transfer_syntaxes"] = (args.syntax,)
    return ServerOptions(**settings)


def scp_log_level(args: argparse.Namespace) -> str:
    """echoscu's levels, but by default `notice`: the start and stop lines,
    warnings (refusals, aborts) and errors, for an SCP's log is read later."""
    if args.quiet or args.debug or args.verbose or args.log_level:
        return log_level(args)
    return "notice"


async def run(args: argparse.Namespace, options: ServerOptions, log: CliLog) -> int:
    import asyncio
    import signal

    from asyncecho.collector import tune_collector
    from asyncecho.server import serve

    tune_collector()  # start-up is done: see asyncecho.collector
    stop = asyncio.Event()
    stopped_by: list[str] = []
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        stopped_by.append(sig.name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    async with serve(args.bind_address, args.port, options=options) as server:
        await stop.wait()
        # Said before the associations in flight are aborted, so that their
        # lines read as the shutdown's.
        busy = server.active
        aborting = f", aborting {busy} association(s) in flight" if busy else ""
        log.say("notice", f"{stopped_by[0]}: stopping{aborting}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    import ipaddress

    networks = []
    for network in args.allowed_network:
        try:
            networks.append(ipaddress.ip_network(network, strict=False))
        except ValueError as exc:
            parser.error(f"argument --allowed-network: {exc}")
    args.allowed_network = networks
    try:
        args.ssl = server_ssl_from(args)
    except OptionError as exc:
        parser.error(str(exc))
    try:
        options = server_options(args)
    except (ValueError, TypeError) as exc:
        # What the library refuses (e.g. -pdu below its minimum) is a usage
        # error here, exit 2, not a failure to serve.
        parser.error(str(exc))
    from asyncecho import logs
    from asyncecho.cli.output import CliLog

    log = CliLog(scp_log_level(args), timestamps=args.timestamps)
    logs.enable_logging(log)
    import asyncio

    try:
        return asyncio.run(run(args, options, log))
    except OSError as exc:
        log.say(
            "error",
            f"Cannot listen on {args.bind_address or '*'}:{args.port}: {exc.strerror or exc}",
        )
        return 1
