"""A service health check with `verify()`.

    python examples/health_check.py                 # against an embedded SCP on loopback
    python examples/health_check.py HOST PORT [AET] # against your PACS

`verify()` never raises for what the network or the peer does: the result
is truthy only on success, and `.error` says what went wrong. Every phase is
bounded (here a 5 s overall deadline), so a silent peer cannot hang it.
"""

from __future__ import annotations

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


async def main(argv: list[str]) -> int:
    if argv:
        host, port = argv[0], int(argv[1])
        report = await health(host, port, *(argv[2:3]))
    else:
        async with asyncecho.serve("127.0.0.1", 0) as server:
            report = await health("127.0.0.1", server.port)
    print(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
