"""`asyncecho merge FILE... -o OUT` (issue 16): one record per target, the
later one winning in file order and within a file, a cancelled record never
replacing a real one; the combined summary; JSONL and CSV in and out; a
target found in two files reported; exit 0/1/2."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from asyncecho import SweepRecord, Target
from asyncecho.results import Timings
from asyncecho.sweeps.output import CsvWriter, JsonlWriter

STARTED = datetime(2026, 12, 2, 8, 0, tzinfo=timezone.utc)


def record(host: str, outcome: str = "success", ms: float = 5.0, detail: str = "") -> SweepRecord:
    ok = outcome == "success"
    return SweepRecord(
        Target(host, 104, "ANY-SCP", "ECHOSCU"),
        outcome,
        STARTED,
        detail=detail,
        timings=Timings(total=ms / 1000.0) if ok else Timings(),
        status=0 if ok else None,
    )


def write(path: Path, records: Sequence[SweepRecord], *, fmt: str = "jsonl") -> str:
    stream = io.StringIO()
    writer = CsvWriter(stream) if fmt == "csv" else JsonlWriter(stream)
    writer.start()
    for item in records:
        writer.write(item)
    path.write_text(stream.getvalue())
    return str(path)


def merge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asyncecho", "merge", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def outcomes(rows: list[dict[str, Any]]) -> dict[str, str]:
    return {row["host"]: row["outcome"] for row in rows}


def test_the_later_record_wins_in_file_order_and_within_a_file(tmp_path: Path) -> None:
    first = write(
        tmp_path / "1.jsonl",
        [record("10.0.0.1", "refused"), record("10.0.0.2"), record("10.0.0.1", "timeout-deadline")],
    )
    second = write(tmp_path / "2.jsonl", [record("10.0.0.1"), record("10.0.0.3", "refused")])
    done = merge(first, second)
    assert done.returncode == 1, done.stderr
    rows = jsonl(done.stdout)
    assert outcomes(rows) == {"10.0.0.1": "success", "10.0.0.2": "success", "10.0.0.3": "refused"}
    assert [row["host"] for row in rows] == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    # the other order: the first file's last record for 10.0.0.1 wins
    again = merge(second, first)
    assert outcomes(jsonl(again.stdout))["10.0.0.1"] == "timeout-deadline"


def test_a_cancelled_record_never_replaces_a_real_one(tmp_path: Path) -> None:
    run = write(
        tmp_path / "run.jsonl",
        [
            record("10.0.0.1", "refused"),
            record("10.0.0.2", "cancelled"),
            record("10.0.0.3", "cancelled"),
        ],
    )
    resumed = write(
        tmp_path / "resumed.jsonl",
        [record("10.0.0.1", "cancelled"), record("10.0.0.2"), record("10.0.0.3", "cancelled")],
    )
    done = merge(run, resumed)
    assert outcomes(jsonl(done.stdout)) == {
        "10.0.0.1": "refused",  # not replaced by the later cancelled one
        "10.0.0.2": "success",  # a real record replaces a cancelled one
        "10.0.0.3": "cancelled",  # nothing real: the cancelled record stays
    }
    assert done.returncode == 1


def test_exit_0_when_every_target_succeeded(tmp_path: Path) -> None:
    shards = [
        write(tmp_path / f"{k}.jsonl", [record(f"10.0.{k}.{i}") for i in range(1, 4)])
        for k in range(3)
    ]
    done = merge(*shards)
    assert done.returncode == 0, done.stderr
    assert len(jsonl(done.stdout)) == 9
    assert "merge: 9 targets from 3 files: 9 ok, 0 failed" in done.stderr
    assert "more than one file" not in done.stderr


def test_the_summary_counts_outcomes_latencies_failures_and_the_slowest(tmp_path: Path) -> None:
    records = [record(f"10.0.0.{i}", ms=float(i)) for i in range(1, 101)]
    records += [record("10.0.1.1", "refused", detail="connection refused")] * 2
    records += [record("10.0.1.2", "timeout-deadline", detail="overall deadline timed out")]
    done = merge(write(tmp_path / "a.jsonl", records), "-o", str(tmp_path / "out.jsonl"))
    assert done.returncode == 1
    err = done.stderr
    assert "merge: 102 targets from 1 file: 100 ok, 2 failed" in err
    assert [
        line.split()
        for line in err.splitlines()
        if line.startswith("  ") and line.split()[0] in ("success", "refused", "timeout-deadline")
    ] == [
        ["success", "100"],
        ["refused", "1"],
        ["timeout-deadline", "1"],
    ]
    assert "latency of successes: p50 50.00 ms, p90 90.00 ms, p99 99.00 ms, max 100.00 ms" in err
    slowest = err.split("slowest successes:\n")[1].splitlines()[:5]
    assert [line.split()[-1] for line in slowest] == [
        f"ANY-SCP@10.0.0.{i}:104" for i in (100, 99, 98, 97, 96)
    ]
    assert "failed targets:" in err
    assert "  ANY-SCP@10.0.1.1:104  refused: connection refused" in err
    assert "  ANY-SCP@10.0.1.2:104  timeout-deadline: overall deadline timed out" in err
    assert len(jsonl((tmp_path / "out.jsonl").read_text())) == 102


def test_many_failed_targets_are_named_up_to_a_limit(tmp_path: Path) -> None:
    records = [record(f"10.0.0.{i}", "refused") for i in range(1, 31)]
    done = merge(write(tmp_path / "a.jsonl", records), "-q")
    assert done.returncode == 1
    assert done.stderr == ""
    noisy = merge(write(tmp_path / "a.jsonl", records))
    assert "failed targets (the first 10):" in noisy.stderr
    named = noisy.stderr.split("failed targets (the first 10):\n")[1].splitlines()
    assert named == [f"  ANY-SCP@10.0.0.{i}:104  refused" for i in range(1, 11)]


def test_a_target_found_in_two_files_is_reported(tmp_path: Path) -> None:
    one = write(tmp_path / "shard-1.jsonl", [record("10.0.0.1"), record("10.0.0.2")])
    two = write(tmp_path / "shard-2.jsonl", [record("10.0.0.2", "refused"), record("10.0.0.3")])
    done = merge(one, two)
    assert (
        f"1 target(s) found in more than one file, the later record kept: "
        f"ANY-SCP@10.0.0.2:104 in {one}, {two}" in done.stderr
    )
    assert outcomes(jsonl(done.stdout))["10.0.0.2"] == "refused"
    # twice in one file is a resumed run's doing, not two shards: no warning
    single = merge(write(tmp_path / "x.jsonl", [record("10.0.0.1", "refused"), record("10.0.0.1")]))
    assert "more than one file" not in single.stderr
    assert single.returncode == 0


def test_csv_and_jsonl_in_any_mix_and_the_output_format(tmp_path: Path) -> None:
    a = write(
        tmp_path / "a.csv", [record("10.0.0.1", ms=1.5), record("10.0.0.2", "refused")], fmt="csv"
    )
    b = write(tmp_path / "b.jsonl", [record("10.0.0.2", ms=2.25)])
    out_csv = tmp_path / "merged.csv"
    assert merge(a, b, "-o", str(out_csv)).returncode == 0
    rows = list(csv.DictReader(out_csv.open()))
    assert [(r["host"], r["outcome"], r["total_ms"], r["ok"]) for r in rows] == [
        ("10.0.0.1", "success", "1.5", "true"),
        ("10.0.0.2", "success", "2.25", "true"),
    ]
    # JSONL out from CSV in keeps the types of a sweep's own JSONL
    out_jsonl = tmp_path / "merged.out"
    assert merge(a, b, "-o", str(out_jsonl), "--format", "jsonl").returncode == 0
    first = jsonl(out_jsonl.read_text())[0]
    direct = record("10.0.0.1", ms=1.5).as_dict()
    assert first == direct
    # --format wins over the extension
    forced = merge(a, b, "--format", "csv")
    assert forced.stdout.splitlines()[0].startswith("host,port,called_aet")


def test_the_output_may_be_one_of_the_inputs(tmp_path: Path) -> None:
    a = write(tmp_path / "a.jsonl", [record("10.0.0.1", "refused")])
    b = write(tmp_path / "b.jsonl", [record("10.0.0.1"), record("10.0.0.2")])
    done = merge(a, b, "-o", a)
    assert done.returncode == 0, done.stderr
    assert outcomes(jsonl(Path(a).read_text())) == {"10.0.0.1": "success", "10.0.0.2": "success"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl", "b.jsonl"]


def test_a_line_cut_short_is_left_out_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "torn.jsonl"
    write(path, [record("10.0.0.1")])
    path.write_text(path.read_text() + json.dumps(record("10.0.0.2").as_dict())[:40])
    done = merge(str(path))
    assert done.returncode == 0, done.stderr
    assert list(outcomes(jsonl(done.stdout))) == ["10.0.0.1"]
    assert "left out 1 unreadable line(s)" in done.stderr


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: [str(p / "missing.jsonl")], "cannot read"),
        (lambda p: [_text(p / "x.txt", "hello world\n")], "not a sweep output"),
        (lambda p: [_text(p / "empty.jsonl", "")], "nothing to merge"),
        (lambda p: [_text(p / "a.jsonl", ""), "--format", "xml"], "invalid choice"),
        (lambda p: [], "the following arguments are required: FILE"),
        (
            lambda p: [
                _text(p / "a.jsonl", json.dumps(record("10.0.0.1").as_dict()) + "\n"),
                "-o",
                str(p / "no" / "such" / "dir.jsonl"),
            ],
            "cannot write",
        ),
    ],
)
def test_usage_errors_exit_2_with_one_line(tmp_path: Path, setup: Any, message: str) -> None:
    done = merge(*setup(tmp_path))
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert message in done.stderr
    errors = [
        line for line in done.stderr.splitlines() if line.startswith("E:") or "error:" in line
    ]
    assert len(errors) == 1, done.stderr


def _text(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)
