"""The Kubernetes example (examples/kubernetes/, issue 16): its manifests are
valid against the Kubernetes schema (`kubernetes-validate`, offline), and
its Indexed Job, run here as one local process per index the way the Job
controller would start its pods (JOB_COMPLETION_INDEX set, `$(VAR)` in the
args expanded, the volumes mapped to folders), sweeps the whole list in
disjoint shards that the merge Job then combines."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from peers import asyncecho_echoscp, closed_port

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "examples" / "kubernetes"
SWEEP_JOB = FOLDER / "sweep-job.yaml"
MERGE_JOB = FOLDER / "merge-job.yaml"


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def job(path: Path) -> dict[str, Any]:
    (found,) = [doc for doc in documents(path) if doc["kind"] == "Job"]
    return found


@pytest.mark.parametrize("path", [SWEEP_JOB, MERGE_JOB], ids=lambda p: p.name)
def test_the_manifests_are_valid_kubernetes(path: Path) -> None:
    version = kubernetes_validate.latest_version()
    for doc in documents(path):
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize(
    "spoil",
    [
        lambda spec: spec.update(completionMod="Indexed"),
        lambda spec: spec["template"]["spec"]["containers"][0].update(arg=["sweep"]),
        lambda spec: spec.update(completions="three"),
    ],
)
def test_the_validation_would_catch_a_mistake(spoil: Any) -> None:
    broken = copy.deepcopy(job(SWEEP_JOB))
    spoil(broken["spec"])
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)


def test_the_sweep_job_is_indexed_with_one_shard_per_index() -> None:
    spec = job(SWEEP_JOB)["spec"]
    assert spec["completionMode"] == "Indexed"
    (container,) = spec["template"]["spec"]["containers"]
    args = container["args"]
    assert args[0] == "sweep"
    shard = args[args.index("--shard") + 1]
    assert shard == f"auto/{spec['completions']}"
    # the merge step reads every index's file
    merge_args = job(MERGE_JOB)["spec"]["template"]["spec"]["containers"][0]["args"]
    output = args[args.index("-o") + 1]
    assert merge_args[1 : 1 + spec["completions"]] == [
        output.replace("$(JOB_COMPLETION_INDEX)", str(index))
        for index in range(spec["completions"])
    ]


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion in command and args: a defined variable
    is replaced, `$$` is a `$`, anything else stays as written."""
    return re.sub(
        r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)",
        lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)),
        text,
    )


def pod_command(
    spec: dict[str, Any], folders: dict[str, Path], index: int | None
) -> tuple[list[str], dict[str, str]]:
    """The `asyncecho` command line a pod of `spec` runs (the image's entry
    point is `asyncecho`), with its volume mounts mapped to local folders."""
    (container,) = spec["template"]["spec"]["containers"]
    env = {} if index is None else {"JOB_COMPLETION_INDEX": str(index)}
    for variable in container.get("env", []):
        if "value" in variable:
            env[variable["name"]] = expand(variable["value"], env)
    args = [expand(arg, env) for arg in container["args"]]
    for mount in container["volumeMounts"]:
        local = str(folders[mount["name"]])
        args = [
            local + arg[len(mount["mountPath"]) :] if arg.startswith(mount["mountPath"]) else arg
            for arg in args
        ]
    environment = {k: v for k, v in os.environ.items() if k != "JOB_COMPLETION_INDEX"}
    environment.update(env)
    return [sys.executable, "-m", "asyncecho", *args], environment


def test_the_jobs_run_as_local_processes_sweep_every_target_once(tmp_path: Path) -> None:
    folders = {"targets": tmp_path / "targets", "results": tmp_path / "results"}
    for folder in folders.values():
        folder.mkdir()
    refused = closed_port()
    with asyncecho_echoscp() as scp:
        live = [f"SCP{i}@127.0.0.1:{scp.port}" for i in range(1, 13)]
        dead = [f"127.0.5.0/28:{refused}"]  # 14 addresses, sharded one by one
        (folders["targets"] / "targets.txt").write_text(
            "\n".join(["# example", *live, *dead]) + "\n"
        )
        spec = job(SWEEP_JOB)["spec"]
        shards: list[list[dict[str, Any]]] = []
        for index in range(spec["completions"]):
            command, env = pod_command(spec, folders, index)
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
            # --exit-zero: failed targets are results, not a pod for the Job to retry
            assert done.returncode == 0, done.stderr
            assert "Traceback" not in done.stderr
            output = folders["results"] / f"shard-{index}.jsonl"
            shards.append([json.loads(line) for line in output.read_text().splitlines()])
    keys = [(r["called_aet"], r["host"], r["port"]) for shard in shards for r in shard]
    assert len(keys) == len(set(keys)) == 12 + 14  # disjoint and complete
    assert all(shards)

    command, env = pod_command(job(MERGE_JOB)["spec"], folders, None)
    merged = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert merged.returncode == 1, merged.stderr  # the refused block failed
    assert "Traceback" not in merged.stderr
    rows = [
        json.loads(line) for line in (folders["results"] / "merged.jsonl").read_text().splitlines()
    ]
    assert sorted((r["called_aet"], r["host"], r["port"]) for r in rows) == sorted(keys)
    assert sum(r["outcome"] == "success" for r in rows) == 12
    assert "merge: 26 targets from 3 files: 12 ok, 14 failed" in merged.stderr
    assert "more than one file" not in merged.stderr
