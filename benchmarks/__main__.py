"""`python -m benchmarks [--smoke | --quick | --full] [--only P1,P4] [--output FILE]`

Prints one table (every competitor's figure and its ratios) and the
verdict on each target of issue 7; writes the raw figures as JSON
(default `benchmarks/results/latest.json`). Never fails for a missed
target: the exit status is 0 unless the harness itself broke.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import report
from .scenarios import PLANS, SWEEP_CONCURRENCY, SWEEP_DEADLINE, Bench

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "latest.json"

SCENARIOS = {
    "P1": (
        "N concurrent associate+echo+release on one loop",
        "0 failures at 10k; >= 0.8x raw on the same loop; <= 12 KB RSS per in-flight association",
    ),
    "P2": ("sequential associate+echo+release", ">= 0.8x raw"),
    "P3": ("sequential against DCMTK storescp (Nagle on)", "median <= 2 ms per association"),
    "P4": ("CLI: one echo as a whole process, median of the runs", "<= 0.15 s"),
    "P5": (
        f"sweep: 1/3 live, 1/3 refused, 1/3 silent, deadline {SWEEP_DEADLINE:g} s, concurrency {SWEEP_CONCURRENCY}",
        f"<= {SWEEP_DEADLINE + 10:g} s, one record per target, each of the right class",
    ),
    "P6": (
        "asyncecho serve() as the SCP under the raw client, N concurrent",
        ">= 0.8x the minimal SCP's rate",
    ),
}


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    size = parser.add_mutually_exclusive_group()
    for name in PLANS:
        size.add_argument(
            f"--{name}", dest="plan", action="store_const", const=name, help=f"the {name} sizes"
        )
    parser.add_argument("--only", help="comma-separated scenarios to run (e.g. P1,P4)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="the JSON file")
    args = parser.parse_args(argv)
    plan = PLANS[args.plan or "quick"]
    only = {s.strip().upper() for s in args.only.split(",")} if args.only else None
    command = "python -m benchmarks " + " ".join(sys.argv[1:] if argv is None else argv)

    started = time.monotonic()
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    machine = report.machine()
    bench = Bench(plan, _log)
    _log(f"{command.strip()}: plan {plan}")
    try:
        bench.run(only)
    finally:
        bench.close()
    report.add_ratios(bench.rows)
    found = report.verdicts(bench.rows, SWEEP_DEADLINE)
    duration = time.monotonic() - started

    scenarios: dict[str, Any] = {}
    for name, (title, target) in SCENARIOS.items():
        if only and name not in only:
            continue
        scenarios[name] = {
            "title": title,
            "target": target,
            "rows": [r for r in bench.rows if r["scenario"] == name],
            "verdicts": [v for v in found if v["scenario"] == name],
        }
    document = {
        "command": command.strip(),
        "plan": plan.__dict__,
        "started": started_at,
        "duration_s": duration,
        "machine": machine,
        "notes": bench.notes,
        "scenarios": scenarios,
    }
    report.write_json(args.output, document)

    print(report.table(bench.rows))
    print()
    print(report.verdict_lines(found))
    print()
    for note in bench.notes:
        print(f"note: {note}")
    print(f"{command.strip()}: {duration:.0f} s; raw figures in {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
