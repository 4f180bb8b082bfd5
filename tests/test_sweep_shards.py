"""`asyncecho sweep --shard K/N` (issue 16): a stable hash of the normalised
(called AE, host, port) splits any list into N disjoint shards that together
hold every target, whatever the list's order and whatever else is in it; a
CIDR block is sharded per address; `auto/N` takes K from a Kubernetes Indexed
Job's JOB_COMPLETION_INDEX; bad specs are usage errors."""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from asyncecho import Target
from asyncecho.cli.output import CliLog
from asyncecho.cli.sweep_input import Plan, count_targets
from asyncecho.sweeps.shards import MAX_SHARDS, Shard, shard_key, shard_of
from peers import closed_port

# --- the hash ----------------------------------------------------------------------------


def _targets(count: int) -> list[Target]:
    hosts = [f"10.{i // 250}.{i % 250}.{i % 7 + 1}" for i in range(count // 2)]
    hosts += [f"pacs-{i}.example.org" for i in range(count - len(hosts))]
    return [Target(host, 104 + i % 3, f"AE{i % 5}") for i, host in enumerate(hosts)]


@pytest.mark.parametrize("count", [1, 2, 3, 7, 64])
def test_shards_are_disjoint_and_complete(count: int) -> None:
    targets = _targets(2000)
    shards = [Shard(k, count) for k in range(1, count + 1)]
    held = [{t for t in targets if shard.holds(t)} for shard in shards]
    assert sum(len(h) for h in held) == len(targets)  # disjoint ...
    assert set().union(*held) == set(targets)  # ... and complete
    assert all(held), "a shard of 2,000 targets came out empty"
    if count > 1:
        # Spread evenly enough to be useful (a loose bound: no timing, no luck
        # beyond a 64-bit hash of 2,000 keys).
        assert max(len(h) for h in held) < 2 * len(targets) / count + 20


def test_the_hash_is_stable_across_processes_and_releases() -> None:
    """Machines running different processes (and Python's salted hash()) must
    agree: these values are pinned, and a change to them splits a fleet."""
    script = (
        "from asyncecho import Target; from asyncecho.sweeps.shards import shard_of;"
        "print([shard_of(Target(h, 104, 'ANY-SCP'), 7) for h in ('10.0.0.1', 'pacs.example.org', '::1')])"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "123"},
    )
    here = [shard_of(Target(h, 104, "ANY-SCP"), 7) for h in ("10.0.0.1", "pacs.example.org", "::1")]
    assert done.stdout.strip() == str(here)
    assert shard_key(Target("10.0.0.1", 104, "ANY-SCP")) == b"ANY-SCP\x0010.0.0.1\x00104"
    assert here == PINNED


PINNED = [2, 3, 4]


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (Target("PACS.Example.ORG", 104, "X"), Target("pacs.example.org.", 104, "X")),
        (Target("0:0:0:0:0:0:0:1", 11112, "X"), Target("::1", 11112, "X")),
        # the calling AE title is not part of what a target is, for sharding
        (Target("10.0.0.1", 104, "X", "ME"), Target("10.0.0.1", 104, "X", "YOU")),
    ],
)
def test_same_target_written_differently_falls_to_the_same_shard(a: Target, b: Target) -> None:
    assert shard_key(a) == shard_key(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (Target("10.0.0.1", 104, "X"), Target("10.0.0.1", 105, "X")),
        (Target("10.0.0.1", 104, "X"), Target("10.0.0.1", 104, "Y")),
        (Target("10.0.0.1", 104, "X"), Target("10.0.0.2", 104, "X")),
        (Target("ae", 104, "X"), Target("a", 104, "EX")),  # no ambiguity at the joins
    ],
)
def test_different_targets_have_different_keys(a: Target, b: Target) -> None:
    assert shard_key(a) != shard_key(b)


@pytest.mark.parametrize(
    ("text", "index", "count"), [("1/1", 1, 1), ("2/3", 2, 3), (" 3/3 ", 3, 3)]
)
def test_shard_specs(text: str, index: int, count: int) -> None:
    assert Shard.parse(text) == Shard(index, count)
    assert str(Shard.parse(text)) == f"{index}/{count}"


@pytest.mark.parametrize(
    "text",
    [
        "0/3",
        "4/3",
        "x/3",
        "1/0",
        "1/",
        "/3",
        "3",
        "-1/3",
        "1/-3",
        "1.5/3",
        "²/3",
        "1/3/4",
        f"1/{MAX_SHARDS + 1}",
    ],
)
def test_bad_shard_specs(text: str) -> None:
    with pytest.raises(ValueError):
        Shard.parse(text)


# --- the command -------------------------------------------------------------------------


def sweep_cli(
    *args: str, input: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "JOB_COMPLETION_INDEX"}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "asyncecho", "sweep", *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
    )


def keys(stdout: str) -> list[tuple[Any, ...]]:
    rows = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    return [(r["called_aet"], r["host"], r["port"]) for r in rows]


def write(path: Path, lines: Sequence[str]) -> str:
    path.write_text("".join(f"{line}\n" for line in lines))
    return str(path)


@pytest.fixture(scope="module")
def refused() -> int:
    return closed_port()


def _lines(port: int) -> list[str]:
    """30 targets on loopback that refuse at once: a CIDR block and single
    addresses with their own called AE titles."""
    return [f"127.0.1.0/28:{port}"] + [f"AE{i}@127.0.2.{i}:{port}" for i in range(1, 17)]


def test_shards_of_a_list_split_it_disjoint_and_complete(tmp_path: Path, refused: int) -> None:
    targets = write(tmp_path / "targets.txt", _lines(refused))
    whole = sweep_cli(targets, "--deadline", "5")
    assert whole.returncode == 1, whole.stderr
    everything = keys(whole.stdout)
    assert len(everything) == len(set(everything)) == 14 + 16
    shards = []
    for k in (1, 2, 3):
        done = sweep_cli(targets, "--shard", f"{k}/3", "--deadline", "5")
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr
        assert f"sweep: {len(keys(done.stdout))} targets" in done.stderr
        shards.append(set(keys(done.stdout)))
    assert sum(len(s) for s in shards) == len(everything)
    assert set().union(*shards) == set(everything)
    assert all(shards)


def test_a_shard_does_not_depend_on_the_order_or_the_rest_of_the_list(
    tmp_path: Path, refused: int
) -> None:
    lines = _lines(refused)
    first = sweep_cli(write(tmp_path / "a.txt", lines), "--shard", "2/3", "--deadline", "5")
    shuffled = lines[:]
    random.Random(16).shuffle(shuffled)
    extra = [f"127.0.3.{i}:{refused}" for i in range(1, 9)]
    second = sweep_cli(
        write(tmp_path / "b.txt", ["# reordered, with more targets", *extra, *shuffled]),
        "--shard",
        "2/3",
        "--deadline",
        "5",
    )
    assert first.returncode == second.returncode == 1, (first.stderr, second.stderr)
    old, new = set(keys(first.stdout)), set(keys(second.stdout))
    assert old and new - old
    assert {key for key in new if key[1].startswith("127.0.3.")} == new - old
    assert {key for key in new if not key[1].startswith("127.0.3.")} == old


def test_a_cidr_block_is_sharded_per_address(tmp_path: Path, refused: int) -> None:
    block = sweep_cli(write(tmp_path / "block.txt", [f"127.0.4.0/27:{refused}"]), "--shard", "1/2")
    listed = sweep_cli(
        write(tmp_path / "listed.txt", [f"127.0.4.{i}:{refused}" for i in range(1, 31)]),
        "--shard",
        "1/2",
    )
    assert block.returncode == listed.returncode == 1, block.stderr
    assert sorted(keys(block.stdout)) == sorted(keys(listed.stdout))
    assert 0 < len(keys(block.stdout)) < 30


def test_a_pipe_is_sharded_too(tmp_path: Path, refused: int) -> None:
    lines = _lines(refused)
    from_file = sweep_cli(write(tmp_path / "t.txt", lines), "--shard", "3/3")
    from_pipe = sweep_cli("-", "--shard", "3/3", input="".join(f"{line}\n" for line in lines))
    assert from_pipe.returncode == 1, from_pipe.stderr
    assert sorted(keys(from_pipe.stdout)) == sorted(keys(from_file.stdout))


@pytest.mark.parametrize(("index", "shard"), [("0", "1/3"), ("2", "3/3")])
def test_auto_takes_the_shard_from_the_job_completion_index(
    tmp_path: Path, refused: int, index: str, shard: str
) -> None:
    targets = write(tmp_path / "targets.txt", _lines(refused))
    auto = sweep_cli(targets, "--shard", "auto/3", env={"JOB_COMPLETION_INDEX": index})
    explicit = sweep_cli(targets, "--shard", shard)
    assert auto.returncode == 1, auto.stderr
    assert sorted(keys(auto.stdout)) == sorted(keys(explicit.stdout))


@pytest.mark.parametrize(
    ("spec", "env", "message"),
    [
        ("0/3", {}, "the shard must be 1 to 3, not 0"),
        ("4/3", {}, "the shard must be 1 to 3, not 4"),
        ("x/3", {}, "expected K/N"),
        ("1/0", {}, "the number of shards must be 1"),
        ("3", {}, "expected K/N"),
        ("auto/3", {}, "JOB_COMPLETION_INDEX (a Kubernetes Indexed Job's index), which is not set"),
        ("auto/3", {"JOB_COMPLETION_INDEX": "3"}, "JOB_COMPLETION_INDEX=3 is shard 4/3"),
        ("auto/3", {"JOB_COMPLETION_INDEX": "-1"}, "not an index from 0"),
        ("auto/0", {"JOB_COMPLETION_INDEX": "0"}, "the number of shards must be 1"),
    ],
)
def test_bad_shard_specs_are_usage_errors(spec: str, env: dict[str, str], message: str) -> None:
    done = sweep_cli("-", "--shard", spec, input="127.0.0.1\n", env=env)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "argument --shard" in errors[0], done.stderr
    assert message in errors[0]


def test_a_shard_with_no_target_of_its_own_is_not_an_error(tmp_path: Path, refused: int) -> None:
    target = Target("127.0.0.1", refused, "ANY-SCP")
    empty = next(k for k in range(1, 5) if shard_of(target, 4) != k)
    done = sweep_cli(write(tmp_path / "one.txt", [f"127.0.0.1:{refused}"]), "--shard", f"{empty}/4")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert f"none of its 1 target(s) fall to shard {empty}/4" in done.stderr
    mine = sweep_cli(
        write(tmp_path / "one.txt", [f"127.0.0.1:{refused}"]),
        "--shard",
        f"{shard_of(target, 4)}/4",
    )
    assert mine.returncode == 1 and len(keys(mine.stdout)) == 1


def test_a_list_without_targets_is_still_nothing_to_check(tmp_path: Path) -> None:
    done = sweep_cli(write(tmp_path / "none.txt", ["# nothing"]), "--shard", "1/2")
    assert done.returncode == 2
    assert "nothing to check" in done.stderr


def test_exit_zero_when_targets_failed_but_not_for_usage_errors(
    tmp_path: Path, refused: int
) -> None:
    targets = write(tmp_path / "targets.txt", [f"127.0.0.1:{refused}"])
    failed = sweep_cli(targets, "--exit-zero")
    assert failed.returncode == 0, failed.stderr
    assert keys(failed.stdout) and "0 ok, 1 failed" in failed.stderr
    assert sweep_cli(targets).returncode == 1
    assert sweep_cli(write(tmp_path / "none.txt", [""]), "--exit-zero").returncode == 2


def test_resume_counts_only_this_shards_done_targets() -> None:
    """The first pass's total (the progress line's, and what decides that
    nothing was left) is this shard's targets less its done ones."""
    args = argparse.Namespace(
        targets="targets.txt",
        port=104,
        called_aet="ANY-SCP",
        calling_aet="ECHOSCU",
        max_cidr_hosts=4096,
        strict=False,
        shard=Shard(2, 3),
    )
    hosts = [f"10.9.0.{i}" for i in range(1, 255)]
    done: set[tuple[str, int, str | None, str | None]] = {
        (host, 104, "ANY-SCP", "ECHOSCU") for host in hosts[::3]
    } | {
        ("10.9.0.7", 105, "ANY-SCP", "ECHOSCU")  # another port: not in the block's targets
    }
    plan = Plan(args)
    plan.done = done
    assert count_targets(plan, CliLog("critical"), ["10.9.0.0/24\n", "pacs.example.org\n"])
    mine = [
        Target(h, 104, "ANY-SCP", "ECHOSCU")
        for h in [*hosts, "pacs.example.org"]
        if args.shard.holds(Target(h, 104, "ANY-SCP"))
    ]
    mine_done = [t for t in mine if t.key in done]
    assert mine_done and len(mine_done) < len(mine)
    assert (plan.total, plan.skipped) == (len(mine) - len(mine_done), len(mine_done))
