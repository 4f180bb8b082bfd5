"""`asyncecho exporter`: a Prometheus exporter for DICOM C-ECHO, in the
blackbox_exporter `/probe` pattern (see `asyncecho.exporter`).

    asyncecho exporter --config exporter.yml --listen 127.0.0.1:9704

Prints `I: listening on http://HOST:PORT/` once it serves (the real port
when given 0), `W:` for a config reload that failed, and runs until SIGINT
or SIGTERM; SIGHUP re-reads the config.

Exit status: 0 stopped by a signal; 1 cannot listen, or the exporter extra
is not installed; 2 a usage error or a bad config file (`E:` names the key).

May import `asyncecho.exporter` (and through it aiohttp and
prometheus_client, the `exporter` extra) and the public API.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from asyncecho._version import __version__

if TYPE_CHECKING:
    from asyncecho.exporter.app import Exporter

DEFAULT_LISTEN = "127.0.0.1:9704"
EXIT_FAILURE = 1
EXIT_USAGE = 2


def listen_address(text: str) -> tuple[str, int]:
    """`HOST:PORT` or `[IPv6]:PORT`; port 0 picks a free one."""
    host, colon, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not colon or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, not {text!r}")
    return host, int(port)


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asyncecho exporter",
        description="Serve DICOM C-ECHO probes to Prometheus: "
        "GET /probe?target=[AET@]HOST:PORT&module=NAME, /metrics, /-/healthy, POST /-/reload.",
        epilog="exit status: 0 stopped by a signal, 1 cannot listen, "
        "2 usage error or bad config file",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="the YAML config (modules); default: one module, `default`, "
        "with the library's defaults",
    )
    parser.add_argument(
        "--listen",
        metavar="HOST:PORT",
        type=listen_address,
        default=listen_address(DEFAULT_LISTEN),
        help=f"where to serve HTTP (default {DEFAULT_LISTEN}: this machine only)",
    )
    parser.add_argument(
        "--max-in-flight",
        metavar="N",
        type=positive,
        default=None,
        help="probes run at once at most; one more is answered at once as "
        "probe_success 0, outcome overloaded (default 1000)",
    )
    parser.add_argument("--version", action="version", version=f"asyncecho {__version__}")
    return parser


def _say(level: str, text: str) -> None:
    prefix = {"info": "I", "warning": "W", "error": "E"}.get(level, "I")
    try:
        sys.stderr.write(f"{prefix}: {text}\n")
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass


async def run(exporter: Exporter, host: str, port: int) -> int:
    import asyncio
    import signal

    from aiohttp import web

    from asyncecho.collector import tune_collector

    runner = web.AppRunner(exporter.application(), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, backlog=4096)
        try:
            await site.start()
        except OSError as exc:
            _say("error", f"cannot listen on {host}:{port}: {exc.strerror or exc}")
            return EXIT_FAILURE
        bound = runner.addresses[0][1] if runner.addresses else port
        shown = f"[{host}]" if ":" in host else host
        modules = ", ".join(exporter.config.modules)
        _say("info", f"listening on http://{shown}:{bound}/ (modules: {modules})")
        tune_collector()  # start-up is done: see asyncecho.collector
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, exporter.reload)
        await stop.wait()
        _say("info", "stopping")
    finally:
        await runner.cleanup()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        from asyncecho.exporter import app, config
    except ImportError as exc:
        _say(
            "error",
            f"the exporter needs the exporter extra ({exc.name or exc} is missing): "
            'pip install "asyncecho[exporter]"',
        )
        return EXIT_FAILURE
    try:
        loaded = config.load(args.config) if args.config else config.Config()
    except config.ConfigError as exc:
        _say("error", f"bad config file {args.config}: {exc}")
        return EXIT_USAGE
    exporter = app.Exporter(
        loaded,
        config_path=args.config,
        max_in_flight=args.max_in_flight or app.DEFAULT_MAX_IN_FLIGHT,
        log=_say,
    )
    import asyncio

    import prometheus_client

    # The *_created series of counters: noise beside blackbox's metrics.
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
    host, port = args.listen
    return asyncio.run(run(exporter, host, port))
