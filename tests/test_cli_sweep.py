"""`asyncecho sweep` end to end, as a subprocess against an SCP in another
process (`asyncecho echoscp`, bound to 127.0.0.1 only, so the rest of
127.0.0.0/8 is refused): records, formats, exit codes, the summary, bad
target files, Ctrl-C and `--resume`."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import resource
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from peers import closed_port, free_port, silent_listener, wait_listening

LOCALHOST = "127.0.0.1"


@pytest.fixture(scope="module")
def scp_port() -> Iterator[int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "asyncecho", "echoscp", str(port), "--bind-address", LOCALHOST],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_listening(port, process)
        yield port
    finally:
        process.terminate()
        process.wait(10)
        if process.stdout:
            process.stdout.close()


def sweep_cli(
    *args: str, input: str | None = None, timeout: float = 60.0, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asyncecho", "sweep", *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def write(tmp_path: Path, name: str, lines: Sequence[str]) -> str:
    path = tmp_path / name
    path.write_text("".join(f"{line}\n" for line in lines))
    return str(path)


def assert_clean(stderr: str) -> None:
    assert "Traceback" not in stderr


# --- records and exit codes ------------------------------------------------------------


def test_all_ok_jsonl_to_stdout_exit_0(tmp_path: Path, scp_port: int) -> None:
    targets = write(
        tmp_path,
        "targets.txt",
        [
            "# three live ones",
            f"A@{LOCALHOST}:{scp_port}",
            "",
            f"B@{LOCALHOST}:{scp_port}",
            f"C@{LOCALHOST}",
        ],
    )
    result = sweep_cli(targets, "--port", str(scp_port), "-aet", "SWEEPER")
    assert result.returncode == 0, result.stderr
    records = jsonl(result.stdout)
    assert sorted(r["called_aet"] for r in records) == ["A", "B", "C"]
    assert {r["outcome"] for r in records} == {"success"}
    assert {r["calling_aet"] for r in records} == {"SWEEPER"}
    assert {r["port"] for r in records} == {scp_port}
    assert all(r["ok"] and r["total_ms"] > 0 and r["started"].endswith("Z") for r in records)
    assert all(r["implementation_class_uid"] and r["transfer_syntax"] for r in records)
    # not a terminal: no progress line, just the summary
    assert "\r" not in result.stderr
    assert "sweep: 3 targets in" in result.stderr
    assert "3 ok, 0 failed" in result.stderr
    assert "latency of successes: p50 " in result.stderr
    assert "slowest successes:" in result.stderr


def test_failures_exit_1_with_counts_per_outcome(tmp_path: Path, scp_port: int) -> None:
    refused = closed_port()
    targets = write(
        tmp_path,
        "targets.txt",
        [
            f"{LOCALHOST}:{scp_port}",
            f"{LOCALHOST}:{refused}",
            f"127.0.0.2:{scp_port}",  # the SCP listens on 127.0.0.1 only
            "nonexistent.invalid:104",
        ],
    )
    result = sweep_cli(targets, "--deadline", "5")
    assert result.returncode == 1, result.stderr
    outcomes = Counter(r["outcome"] for r in jsonl(result.stdout))
    assert outcomes == {"success": 1, "refused": 2, "dns": 1}
    lines = result.stderr.splitlines()
    assert "4 targets in" in lines[0] and "1 ok, 3 failed" in lines[0]
    assert any(line.split() == ["refused", "2"] for line in lines)
    assert any(line.split() == ["dns", "1"] for line in lines)
    assert_clean(result.stderr)


def test_cidr_block_against_an_scp_bound_to_one_address(tmp_path: Path, scp_port: int) -> None:
    targets = write(tmp_path, "targets.txt", [f"127.0.0.0/29:{scp_port}"])
    result = sweep_cli(targets)
    assert result.returncode == 1
    records = jsonl(result.stdout)
    assert sorted(r["host"] for r in records) == [f"127.0.0.{i}" for i in range(1, 7)]
    outcomes = {r["host"]: r["outcome"] for r in records}
    assert outcomes.pop(LOCALHOST) == "success"
    assert set(outcomes.values()) == {"refused"}


def test_csv_output_file_and_csv_input(tmp_path: Path, scp_port: int) -> None:
    refused = closed_port()
    targets = write(
        tmp_path,
        "targets.csv",
        [
            "host,port,called_aet,calling_aet",
            f"{LOCALHOST},{scp_port},PACS,ME",
            f"{LOCALHOST},{refused},,",
        ],
    )
    out = tmp_path / "out.csv"
    result = sweep_cli(targets, "-o", str(out), "-q")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == ""  # --quiet: no summary
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 2
    by_outcome = {row["outcome"]: row for row in rows}
    assert by_outcome["success"]["called_aet"] == "PACS"
    assert by_outcome["success"]["calling_aet"] == "ME"
    assert by_outcome["success"]["ok"] == "true"
    assert by_outcome["refused"]["called_aet"] == "ANY-SCP"
    assert by_outcome["refused"]["ok"] == "false"
    assert by_outcome["refused"]["connect_ms"] == ""
    # the CSV output is itself a target file
    again = sweep_cli(str(out), "--format", "jsonl", "-q")
    assert Counter(r["outcome"] for r in jsonl(again.stdout)) == {"success": 1, "refused": 1}


def test_csv_to_stdout_with_format(scp_port: int) -> None:
    result = sweep_cli("-", "--format", "csv", input=f"{LOCALHOST}:{scp_port}\n")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [row["outcome"] for row in rows] == ["success"]


def test_targets_from_a_stdin_pipe(scp_port: int) -> None:
    lines = "".join(f"S{i}@{LOCALHOST}:{scp_port}\n" for i in range(20)) + "bad line here\n"
    result = sweep_cli("-", input=lines)
    assert result.returncode == 0, result.stderr
    assert sorted(r["called_aet"] for r in jsonl(result.stdout)) == sorted(
        f"S{i}" for i in range(20)
    )
    assert "W: -: line 21: white space inside the host" in result.stderr


# --- bad input ------------------------------------------------------------------------


def test_bad_lines_are_skipped_with_their_numbers(tmp_path: Path, scp_port: int) -> None:
    targets = write(
        tmp_path,
        "targets.txt",
        [f"{LOCALHOST}:{scp_port}", "127.0.0.1:99999", "# fine", "bad host", "127.0.0.0/8"],
    )
    result = sweep_cli(targets)
    assert result.returncode == 0
    assert len(jsonl(result.stdout)) == 1
    assert f"W: {targets}: line 2: port 99999 is not in 1-65535" in result.stderr
    assert f"W: {targets}: line 4: white space inside the host" in result.stderr
    assert "line 5: CIDR block 127.0.0.0/8 has 16777214 hosts" in result.stderr
    assert "--max-cidr-hosts" in result.stderr
    assert "skipped 3 bad line(s)" in result.stderr
    assert_clean(result.stderr)


def test_strict_fails_before_checking_anything(tmp_path: Path) -> None:
    with silent_listener() as silent:
        targets = write(tmp_path, "targets.txt", [f"{LOCALHOST}:{silent}", "bad host"])
        result = sweep_cli(targets, "--strict")
    assert result.returncode == 2
    assert result.stdout == ""
    assert f"E: {targets}: line 2: white space inside the host" in result.stderr
    assert "nothing was checked (--strict)" in result.stderr
    assert_clean(result.stderr)


def test_strict_on_a_pipe_stops_at_the_bad_line(scp_port: int) -> None:
    result = sweep_cli("-", "--strict", input=f"{LOCALHOST}:{scp_port}\nnot:a:port:x\n")
    assert result.returncode == 2
    assert "E: -: line 2: invalid IPv6 address" in result.stderr
    assert "stopping (--strict)" in result.stderr
    assert_clean(result.stderr)


def test_cidr_cap_can_be_raised(tmp_path: Path) -> None:
    refused = closed_port()
    targets = write(tmp_path, "targets.txt", [f"127.0.0.0/28:{refused}"])
    capped = sweep_cli(targets, "--max-cidr-hosts", "10", "--strict")
    assert capped.returncode == 2
    assert "has 14 hosts, more than the limit of 10" in capped.stderr
    raised = sweep_cli(targets, "--max-cidr-hosts", "14", "-q")
    assert raised.returncode == 1
    assert len(jsonl(raised.stdout)) == 14


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/nonexistent/targets.txt"], "E: cannot read /nonexistent/targets.txt: No such file"),
        (["-c", "0", "-"], "must be at least 1"),
        (["--rate", "0", "-"], "must be more than 0"),
        (["--deadline", "soon", "-"], "invalid number of seconds"),
        (["--port", "70000", "-"], "port must be 1-65535"),
        (["-aec", "X" * 17, "-"], "longer than 16 characters"),
        (["--format", "xml", "-"], "invalid choice"),
        (["--resume", "/nonexistent/out.jsonl", "-"], "E: cannot read --resume file"),
        ([], "the following arguments are required: TARGETS"),
        # issue #13: tracebacks, or a sweep that recorded every target as `error`
        (["--rate", "nan", "-"], "must be a finite number"),
        (["--rate", "inf", "-"], "must be a finite number"),
        (["--rate", "1e-300", "-"], "must be at least"),
        (["--deadline", "nan", "-"], "seconds must be a finite number"),
        (["--deadline", "inf", "-"], "seconds must be a finite number"),
        (["-ta", "nan", "-"], "seconds must be a finite number"),
        (["-pdu", "1099511627776", "-"], "a 32-bit length"),
    ],
)
def test_usage_errors_exit_2_without_a_traceback(args: list[str], message: str) -> None:
    result = sweep_cli(*args, input="")
    assert result.returncode == 2
    assert message in result.stderr
    assert_clean(result.stderr)


def test_resume_file_that_is_not_a_sweep_output(tmp_path: Path) -> None:
    earlier = write(tmp_path, "earlier.txt", ["hello world"])
    result = sweep_cli("-", "--resume", earlier, input="")
    assert result.returncode == 2
    assert "not a sweep output" in result.stderr


def test_output_file_that_cannot_be_written(tmp_path: Path, scp_port: int) -> None:
    result = sweep_cli("-", "-o", str(tmp_path / "missing" / "out.jsonl"), input="")
    assert result.returncode == 2
    assert "E: cannot write" in result.stderr
    assert_clean(result.stderr)


def test_help_and_the_command_list() -> None:
    result = sweep_cli("--help")
    assert result.returncode == 0
    for option in ("--concurrency", "--rate", "--deadline", "--resume", "--strict", "-aec"):
        assert option in result.stdout
    listing = subprocess.run(
        [sys.executable, "-m", "asyncecho", "--help"], capture_output=True, text=True, check=True
    )
    assert "sweep" in listing.stdout


# --- limits and the terminal ---------------------------------------------------------


def test_concurrency_is_clamped_below_the_open_file_limit(scp_port: int) -> None:
    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (300, 300))

    result = sweep_cli("-c", "1000", "-", input=f"{LOCALHOST}:{scp_port}\n", preexec_fn=low_limit)
    assert result.returncode == 0, result.stderr
    assert (
        "W: --concurrency 1000 needs more open files than the limit allows "
        "(ulimit -n: 300, hard 300): using 200" in result.stderr
    )


def test_progress_line_on_a_terminal(tmp_path: Path) -> None:
    with silent_listener() as silent:
        targets = write(tmp_path, "targets.txt", [f"S{i}@{LOCALHOST}:{silent}" for i in range(3)])
        leader, follower = pty.openpty()
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "asyncecho", "sweep", targets, "--deadline", "0.8"],
                stdout=subprocess.PIPE,
                stderr=follower,
            )
            out, _ = process.communicate(timeout=30)
            os.close(follower)
            follower = -1
            seen = b""
            while True:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # EIO: the other side is closed
                    break
                if not chunk:
                    break
                seen += chunk
        finally:
            os.close(leader)
            if follower >= 0:
                os.close(follower)
    assert process.returncode == 1
    assert len(jsonl(out.decode())) == 3
    text = seen.decode()
    assert "\r0/3 done, 0 ok, 0 failed, 3 in flight" in text
    assert "\x1b[K" in text
    assert "sweep: 3 targets in" in text


# --- Ctrl-C and --resume --------------------------------------------------------------


def wait_for_lines(path: Path, count: int, process: subprocess.Popen[str]) -> None:
    end = time.monotonic() + 30
    while time.monotonic() < end:
        if path.exists() and len(path.read_text().splitlines()) >= count:
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    raise AssertionError(f"{path} never reached {count} lines")


def final_records(path: Path) -> dict[str, list[str]]:
    outcomes: dict[str, list[str]] = {}
    for record in jsonl(path.read_text()):
        outcomes.setdefault(record["called_aet"], []).append(record["outcome"])
    return outcomes


@pytest.mark.parametrize(
    ("sig", "concurrency"), [(signal.SIGINT, 256), (signal.SIGTERM, 10)], ids=["SIGINT", "SIGTERM"]
)
def test_interrupt_loses_no_record_and_resume_completes_the_rest(
    tmp_path: Path, scp_port: int, sig: signal.Signals, concurrency: int
) -> None:
    with silent_listener() as silent:
        lines = [f"LIVE{i}@{LOCALHOST}:{scp_port}" for i in range(5)]
        lines += [f"SILENT{i}@{LOCALHOST}:{silent}" for i in range(30)]
        targets = write(tmp_path, "targets.txt", lines)
        out = tmp_path / "out.jsonl"
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "asyncecho", "sweep", targets, "-o", str(out)),
                *("--deadline", "60", "-c", str(concurrency)),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for_lines(out, 5, process)
        time.sleep(0.2)  # let the silent ones connect
        process.send_signal(sig)
        _, stderr = process.communicate(timeout=20)
        assert process.returncode == 130, stderr
        assert_clean(stderr)
        assert f"stopped ({sig.name})" in stderr
        first = final_records(out)
        # each started target has exactly one record: the finished ones and
        # the cancelled in-flight ones
        assert all(len(outcomes) == 1 for outcomes in first.values())
        assert [first[f"LIVE{i}"] for i in range(5)] == [["success"]] * 5
        cancelled = [name for name, outcomes in first.items() if outcomes == ["cancelled"]]
        assert len(cancelled) == min(30, concurrency)
        if concurrency < 30:
            assert f"{30 - concurrency} not started" in stderr
        else:
            assert len(first) == 35  # every target has its record

        assert f"--resume {out} -o {out} checks the rest" in stderr

        # --resume: only the cancelled and not started ones run again, and
        # the file ends with one final record per target (no cancelled left)
        resumed = sweep_cli(
            targets, "-o", str(out), "--resume", str(out), "--deadline", "0.5", "-c", "256"
        )
    assert resumed.returncode == 1, resumed.stderr
    assert f"sweep: 35 targets (5 from --resume {out}, 30 in " in resumed.stderr
    assert "5 ok, 30 failed" in resumed.stderr
    final = final_records(out)
    assert len(final) == 35
    assert all(len(outcomes) == 1 for outcomes in final.values())
    assert Counter(outcomes[0] for outcomes in final.values()) == {
        "success": 5,
        "timeout-deadline": 30,
    }


# --- issue #13: exit codes that tell the truth, output files --------------------------


def run_sweep(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    result = sweep_cli(*args, **kwargs)
    assert_clean(result.stderr)
    return result


@pytest.mark.parametrize(
    ("lines", "why"),
    [
        ([], "it names no target"),
        (["# only a comment", ""], "it names no target"),
        (["bad host", "127.0.0.1:99999"], "every line of it is bad (2 bad line(s))"),
        (["name,port", "127.0.0.1,104"], "every line of it is bad (2 bad line(s))"),
        (["127.0.0.0/8"], "every line of it is bad (1 bad line(s))"),
    ],
    ids=["empty", "comments-only", "every-line-bad", "csv-without-host", "cidr-over-the-limit"],
)
def test_a_sweep_that_checked_nothing_is_a_usage_error(
    tmp_path: Path, lines: list[str], why: str
) -> None:
    targets = write(tmp_path, "targets.txt", lines)
    result = run_sweep(targets)
    assert (result.returncode, result.stdout) == (2, "")
    assert f"E: {targets}: nothing to check: {why}" in result.stderr


@pytest.mark.parametrize("text", ["", "# nothing\n", "bad host\n"], ids=["empty", "comment", "bad"])
def test_a_pipe_that_names_no_target_is_a_usage_error(text: str) -> None:
    result = run_sweep("-", input=text)
    assert (result.returncode, result.stdout) == (2, "")
    assert "E: -: nothing to check: no target was read" in result.stderr


def test_output_over_the_target_file_is_a_usage_error(tmp_path: Path) -> None:
    targets = write(tmp_path, "targets.txt", [f"{LOCALHOST}:{closed_port()}"])
    before = Path(targets).read_text()
    result = run_sweep(targets, "-o", targets)
    assert (result.returncode, result.stdout) == (2, "")
    assert f"E: -o {targets} is the target file: writing would destroy it" in result.stderr
    assert Path(targets).read_text() == before


def test_closed_stdin_is_a_usage_error() -> None:
    result = run_sweep("-", stdin=None, preexec_fn=lambda: os.close(0))
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.splitlines() == ["E: cannot read -: standard input is closed"]


def test_closed_stdout_without_an_output_file_is_a_usage_error(tmp_path: Path) -> None:
    targets = write(tmp_path, "targets.txt", [f"{LOCALHOST}:{closed_port()}"])
    result = subprocess.run(
        [sys.executable, "-m", "asyncecho", "sweep", targets],
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
        preexec_fn=lambda: os.close(1),
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "E: standard output is closed: name an output file with -o FILE"
    ]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_full_disk_is_one_error_line_and_exit_1(tmp_path: Path, fmt: str) -> None:
    targets = write(tmp_path, "targets.txt", [f"{LOCALHOST}:{closed_port()}"])
    result = run_sweep(targets, "-o", "/dev/full", "--format", fmt, "-q")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "E: cannot write the records to /dev/full: No space left on device"
    ]


def test_a_full_disk_on_stdout_is_one_error_line_and_exit_1(tmp_path: Path) -> None:
    targets = write(tmp_path, "targets.txt", [f"{LOCALHOST}:{closed_port()}"])
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [sys.executable, "-m", "asyncecho", "sweep", targets, "-q"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "E: cannot write the records to standard output: No space left on device"
    ]


def _three_live(tmp_path: Path, scp_port: int) -> str:
    return write(tmp_path, "targets.txt", [f"LIVE{i}@{LOCALHOST}:{scp_port}" for i in range(3)])


def test_resume_after_a_torn_jsonl_line_checks_that_target_again(
    tmp_path: Path, scp_port: int
) -> None:
    targets = _three_live(tmp_path, scp_port)
    out = tmp_path / "out.jsonl"
    assert run_sweep(targets, "-o", str(out), "-q").returncode == 0
    text = out.read_text()
    out.write_text(text[: len(text) - 20])  # a crash mid-write: the last line cut short
    torn = json.loads(text.splitlines()[-1])["called_aet"]

    result = run_sweep(targets, "-o", str(out), "--resume", str(out))
    assert result.returncode == 0, result.stderr
    assert "left out 1 unreadable line(s)" in result.stderr
    assert f"sweep: 3 targets (2 from --resume {out}, 1 in " in result.stderr
    records = jsonl(out.read_text())  # every line parses: nothing glued onto the torn one
    assert sorted(r["called_aet"] for r in records) == ["LIVE0", "LIVE1", "LIVE2"]
    assert records[-1]["called_aet"] == torn
    assert {r["outcome"] for r in records} == {"success"}


def test_resume_after_a_torn_csv_line_checks_that_target_again(
    tmp_path: Path, scp_port: int
) -> None:
    """A CSV line cut after its outcome still parses: a file that does not
    end in a newline has a torn last line all the same."""
    targets = _three_live(tmp_path, scp_port)
    out = tmp_path / "out.csv"
    assert run_sweep(targets, "-o", str(out), "-q").returncode == 0
    text = out.read_text()
    last = text.splitlines()[-1]
    cut = last.index(",success,") + len(",success,")
    out.write_text(text[: len(text) - len(last) - 1] + last[:cut])

    result = run_sweep(targets, "-o", str(out), "--resume", str(out), "-q")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert sorted(row["called_aet"] for row in rows) == ["LIVE0", "LIVE1", "LIVE2"]
    assert all(row["outcome"] == "success" and row["total_ms"] for row in rows)


def test_resume_into_another_file_carries_the_earlier_records_over(
    tmp_path: Path, scp_port: int
) -> None:
    targets = _three_live(tmp_path, scp_port)
    earlier = tmp_path / "earlier.jsonl"
    assert run_sweep(targets, "-o", str(earlier), "-q").returncode == 0
    lines = earlier.read_text().splitlines()
    kept = json.loads(lines[0])
    cancelled = {**json.loads(lines[1]), "ok": False, "outcome": "cancelled"}
    earlier.write_text(json.dumps(kept) + "\n" + json.dumps(cancelled) + "\n")
    before = earlier.read_text()

    out = tmp_path / "out.csv"
    result = run_sweep(targets, "--resume", str(earlier), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert earlier.read_text() == before
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert sorted(row["called_aet"] for row in rows) == ["LIVE0", "LIVE1", "LIVE2"]
    assert rows[0]["called_aet"] == kept["called_aet"]
    assert rows[0]["started"] == kept["started"]
    assert {row["outcome"] for row in rows} == {"success"}


def test_resume_with_nothing_left_sums_up_the_whole_run(tmp_path: Path, scp_port: int) -> None:
    targets = _three_live(tmp_path, scp_port)
    out = tmp_path / "out.jsonl"
    first = run_sweep(targets, "-o", str(out))
    assert first.returncode == 0
    before = jsonl(out.read_text())

    result = run_sweep(targets, "-o", str(out), "--resume", str(out))
    assert result.returncode == 0, result.stderr
    assert f"sweep: 3 targets (3 from --resume {out}, 0 in " in result.stderr
    assert "3 ok, 0 failed" in result.stderr
    assert "latency of successes: p50 " in result.stderr
    assert jsonl(out.read_text()) == before


def test_resume_exit_status_covers_the_earlier_failures(tmp_path: Path, scp_port: int) -> None:
    refused = closed_port()
    targets = write(tmp_path, "targets.txt", [f"{LOCALHOST}:{scp_port}", f"{LOCALHOST}:{refused}"])
    out = tmp_path / "out.jsonl"
    assert run_sweep(targets, "-o", str(out), "-q").returncode == 1
    records = jsonl(out.read_text())
    live = next(r for r in records if r["ok"])
    out.write_text(
        "".join(json.dumps(r) + "\n" for r in records if not r["ok"])
        + json.dumps({**live, "ok": False, "outcome": "cancelled"})
        + "\n"
    )
    result = run_sweep(targets, "-o", str(out), "--resume", str(out))
    assert result.returncode == 1, result.stderr  # the refused one, from the earlier run
    assert "1 ok, 1 failed" in result.stderr
    assert sorted(r["outcome"] for r in jsonl(out.read_text())) == ["refused", "success"]


def test_stopped_sweep_to_stdout_names_no_made_up_file(tmp_path: Path) -> None:
    with silent_listener() as silent:
        targets = write(tmp_path, "targets.txt", [f"{LOCALHOST}:{silent}"])
        process = subprocess.Popen(
            [sys.executable, "-m", "asyncecho", "sweep", targets, "--deadline", "60"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stderr is not None
        time.sleep(1.0)  # not a timed assertion: the signal may come before or after the connect
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=20)
    assert process.returncode == 130, stderr
    assert "--resume OUTPUT" not in stderr
    assert "save the records and pass them to --resume to check the rest" in stderr


def test_resume_does_not_expand_a_cidr_block_to_count_what_is_done(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first pass counts a block's done targets against the done set;
    it never walks the block's 16 million addresses."""
    import argparse

    from asyncecho.cli import sweep_input as cli_sweep
    from asyncecho.cli.output import CliLog
    from asyncecho.sweeps.targets import TargetLine

    def no_expansion(self: TargetLine) -> Iterator[object]:
        assert isinstance(self.host, str), f"{self.host} expanded"
        yield from ()

    args = argparse.Namespace(
        targets="targets.txt",
        port=104,
        called_aet="ANY-SCP",
        calling_aet="ECHOSCU",
        max_cidr_hosts=2**24,
        strict=False,
        shard=None,
    )
    plan = cli_sweep.Plan(args)
    plan.done = {
        ("10.1.2.3", 104, "ANY-SCP", "ECHOSCU"),
        ("10.255.255.254", 104, "ANY-SCP", "ECHOSCU"),
        ("10.0.0.0", 104, "ANY-SCP", "ECHOSCU"),  # the network address: not a host
        ("10.1.2.4", 105, "ANY-SCP", "ECHOSCU"),  # another port
        ("11.0.0.1", 104, "ANY-SCP", "ECHOSCU"),  # outside the block
    }
    monkeypatch.setattr(TargetLine, "targets", no_expansion)
    assert cli_sweep.count_targets(plan, CliLog("critical"), ["10.0.0.0/8\n"])
    assert (plan.total, plan.skipped) == (2**24 - 2 - 2, 2)
