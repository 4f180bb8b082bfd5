"""The benchmark harness keeps working: its precomputed PDUs are valid, its
raw client and minimal SCP talk, and `python -m benchmarks --smoke` runs
every scenario end to end. No timing is asserted, ever (issue 7)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from asyncecho.protocol.dimse import C_ECHO_RQ, C_ECHO_RSP, decode_command
from asyncecho.protocol.pdu import AssociateAC, AssociateRQ, PDataTF, decode_pdu

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `pytest` (unlike `python -m pytest`) leaves the repo root out
    sys.path.insert(0, str(REPO))

from benchmarks import minimal_scp, pdus  # noqa: E402
from benchmarks.raw_client import raw_echo  # noqa: E402


def test_precomputed_pdus_decode_with_asyncecho() -> None:
    rq = decode_pdu(pdus.ASSOCIATE_RQ)
    assert isinstance(rq, AssociateRQ)
    assert rq.presentation_contexts[0].context_id == 1
    ac = decode_pdu(pdus.ASSOCIATE_AC)
    assert isinstance(ac, AssociateAC)
    assert ac.presentation_contexts[0].transfer_syntax == pdus.IMPLICIT_VR_LE
    for raw, field in ((pdus.ECHO_RQ, C_ECHO_RQ), (pdus.ECHO_RSP, C_ECHO_RSP)):
        pdata = decode_pdu(raw)
        assert isinstance(pdata, PDataTF)
        assert decode_command(pdata.pdvs[0].data).command_field == field
    patched = pdus.ECHO_RSP_PREFIX + (7).to_bytes(2, "little") + pdus.ECHO_RSP_SUFFIX
    pdata = decode_pdu(patched)
    assert isinstance(pdata, PDataTF)
    assert decode_command(pdata.pdvs[0].data).message_id_being_responded_to == 7


def test_raw_client_and_asyncecho_against_minimal_scp() -> None:
    async def main() -> tuple[bool, int | None]:
        import asyncecho

        server = await minimal_scp.start()
        port = int(server.sockets[0].getsockname()[1])
        try:
            ok = await asyncio.wait_for(raw_echo("127.0.0.1", port), 10)
            result = await asyncecho.echo("127.0.0.1", port, deadline=10)
        finally:
            server.close()
        return ok, result.status

    assert asyncio.run(main()) == (True, 0)


def test_smoke_run_covers_every_scenario(tmp_path: Path) -> None:
    output = tmp_path / "smoke.json"
    try:
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks", "--smoke", "--output", str(output)],
            cwd=REPO,
            capture_output=True,
            timeout=600,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("python -m benchmarks --smoke did not finish in 600 s")
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    document = json.loads(output.read_text())
    assert set(document["scenarios"]) == {"P1", "P2", "P3", "P4", "P5", "P6"}
    for name, scenario in document["scenarios"].items():
        rows = scenario["rows"]
        assert rows, name
        measured = [r for r in rows if r.get("rate_per_s") or "skipped" in r]
        assert measured, f"{name}: nothing measured: {rows}"
    # The harness's own competitors (the ceilings) must work end to end.
    for scenario in document["scenarios"].values():
        for row in scenario["rows"]:
            if row["label"].startswith(("raw/", "minimal SCP/")):
                assert "error" not in row, row
                assert row["failures"] == 0, row


def test_core_cost_runs_both_sides_for_real() -> None:
    """`python -m benchmarks.profiling core`: each side's association must
    really succeed (the helpers raise otherwise), and the figures print."""
    from benchmarks import core_cost

    core_cost.client_association()
    core_cost.scp_association()
    lines = core_cost.report(200, profile=False).splitlines()
    assert [line.split()[0] for line in lines] == ["client", "SCP"]
    assert all("µs" in line for line in lines)


def test_ablation_runs_its_three_clients() -> None:
    """`python -m benchmarks.profiling ablation`, small: each client really
    completes its associations (the harness raises otherwise)."""
    from benchmarks import ablation

    lines = ablation.report(20, rounds=1, pin=False).splitlines()
    assert [line.split()[0] for line in lines[2:]] == ["raw", "raw+core", "echo()"]


def test_server_ablation_runs_its_three_servers() -> None:
    """`python -m benchmarks.profiling server-ablation`, small: the raw
    client completes its associations against each SCP (the harness raises
    otherwise), and the collector's share is reported."""
    from benchmarks import server_ablation

    lines = server_ablation.report(20, rounds=1, pin=False).splitlines()
    assert [line.split()[0] for line in lines[2:]] == ["minimal", "minimal+core", "serve()"]
    assert all("gc" in line for line in lines[2:])


def test_gc_clock_counts_collections() -> None:
    import gc

    from benchmarks.procstat import GcClock

    with GcClock() as clock:
        gc.collect()
        gc.collect()
    assert clock.count == 2 and clock.seconds >= 0.0
    assert clock._callback not in gc.callbacks


def test_x_ref_is_the_median_of_round_by_round_ratios() -> None:
    """Round i of a row and of its reference ran back to back: their ratio
    is taken under the same conditions, and a round in which the machine
    slowed both down does not skew the figure."""
    from benchmarks.report import add_ratios, paired_ratio

    assert paired_ratio([80, 40, 90], [100, 50, 100]) == (0.8, [0.8, 0.8, 0.9])
    assert paired_ratio([80], [100]) is None  # one round: nothing to pair
    assert paired_ratio([80, None], [100, 100]) is None  # a failed round
    assert paired_ratio([80, 90], [100, 100, 100]) is None
    rows: list[dict[str, object]] = [
        {
            "scenario": "P1",
            "n": 10,
            "label": "raw/asyncio",
            "rate_per_s": 100.0,
            "rate_per_s_all": [100.0, 50.0, 120.0],
        },
        {
            "scenario": "P1",
            "n": 10,
            "label": "asyncecho/asyncio",
            "rate_per_s": 60.0,
            "rate_per_s_all": [80.0, 40.0, 60.0],
        },
        {"scenario": "P1", "n": 10, "label": "asyncecho/uvloop", "rate_per_s": 90.0},
        {"scenario": "P1", "n": 10, "label": "raw/uvloop", "rate_per_s": 100.0},
    ]
    add_ratios(rows)
    assert rows[0]["x_ref"] == 1.0
    assert rows[1]["x_ref"] == 0.8 and rows[1]["x_ref_rounds"] == [0.8, 0.8, 0.5]
    assert rows[2]["x_ref"] == 0.9 and "x_ref_rounds" not in rows[2]  # one round each


def test_collector_ab_runs_both_modes() -> None:
    """`python -m benchmarks.collector_ab`, small: both processes really
    complete their associations (check=True and the child raise otherwise)."""
    from benchmarks import collector_ab

    lines = collector_ab.report(20, rounds=1).splitlines()
    assert [line.split()[0] for line in lines[1:]] == ["plain", "tuned"]
