"""The exporter benchmark's harness keeps working (`benchmarks/exporter_bench.py`,
a few probes each way): every probe succeeds on both sides and the table
comes out. No timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_exporter_benchmark_smoke() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.exporter_bench", "-n", "20", "--rounds", "1", "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    *table, figures = done.stdout.strip().splitlines()
    assert any(line.startswith("exporter / bare: rate") for line in table), done.stdout
    result = json.loads(figures)
    assert result["n"] == 20
    for side in ("bare", "exporter"):
        assert result[side]["failures"] == 0, result
        assert result[side]["rate"] > 0
