"""A service health check with `verify()`.

    python examples/health_check.py                   # an embedded SCP on loopback
    python examples/health_check.py HOST [PORT [AET]] # your PACS (port 104)

`verify()` never raises for what the network or the peer does: the result
is truthy only on success, and `.error` says what went wrong. Every phase is
bounded (here a 5 s overall deadline), so a silent peer cannot hang it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

import asyncecho


async def health(host: str, port: int, called_ae: str = "ANY-SCP") -> dict[str, Any]:
    result = await asyncecho.verify(
        host,
        port,
        called_ae=called_ae,
        connect_timeout=2,
        acse_timeout=3,
        dimse_timeout=3,
        deadline=5,
    )
    report: dict[str, Any] = {
        "target": f"{called_ae}@{host}:{port}",
        "ok": result.ok,
        "outcome": result.outcome,
    }
    if result.ok:
        report["latency_ms"] = round((result.timings.total or 0.0) * 1000, 2)
        report["peer"] = result.peer_implementation_version_name
    else:
        report["error"] = str(result.error)
    return report


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="DICOM C-ECHO health check (JSON on stdout)")
    parser.add_argument("host", nargs="?", help="the peer (default: an embedded SCP on loopback)")
    parser.add_argument("port", nargs="?", type=int, default=104, help="its port (default: 104)")
    parser.add_argument("called_ae", nargs="?", default="ANY-SCP", help="its AE title")
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        parser.error(f"port {args.port} is not 1-65535")
    return args


async def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.host is not None:
        report = await health(args.host, args.port, args.called_ae)
    else:
        async with asyncecho.serve("127.0.0.1", 0) as server:
            report = await health("127.0.0.1", server.port)
    print(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
