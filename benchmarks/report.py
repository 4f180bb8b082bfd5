"""Ratios, verdicts against the targets of issue 7, the table and the JSON."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from .servers import DCMTK_STORESCP, REPO_ROOT, version_of

# For each scenario: whom a row is compared with ("x ref", higher is better).
# P1-P3: the raw client on the same loop; P4: DCMTK's echoscu; P6: the minimal
# SCP on the same loop.


def reference_label(scenario: str, label: str) -> str | None:
    if scenario in ("P1", "P2", "P3"):
        competitor, _, loop = label.partition("/")
        return f"raw/{loop}" if competitor == "asyncecho" else "raw/asyncio"
    if scenario == "P4":
        return "DCMTK echoscu"
    if scenario == "P6":
        return "minimal SCP/" + label.partition("/")[2]
    return None


def pynetdicom_label(scenario: str) -> str | None:
    if scenario in ("P1", "P2", "P3"):
        return "pynetdicom/threads"
    if scenario == "P4":
        return "pynetdicom echoscu"
    return None


def paired_ratio(rates: list[Any], bases: list[Any]) -> tuple[float, list[float]] | None:
    """The median of round-by-round ratios, and those ratios: round i of a
    row and of its reference ran back to back (interleaved), so each ratio
    is taken under the same conditions and drift between rounds cancels.
    None unless both have the same number (> 1) of successful rounds."""
    if len(rates) != len(bases) or len(rates) < 2:
        return None
    if not all(isinstance(v, (int, float)) and v > 0 for v in (*rates, *bases)):
        return None
    ratios = [rate / base for rate, base in zip(rates, bases, strict=True)]
    return statistics.median(ratios), ratios


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """x ref and x pyn. With several interleaved rounds on both sides, x ref
    is the median of the per-round ratios (see `paired_ratio`); otherwise
    the ratio of the reported (median-rate) rounds."""
    by_label = {(r["scenario"], r["n"], r["label"]): r for r in rows if r.get("rate_per_s")}
    for row in rows:
        rate = row.get("rate_per_s")
        if not rate:
            continue
        for key, other in (
            ("x_ref", reference_label(row["scenario"], row["label"])),
            ("x_pynetdicom", pynetdicom_label(row["scenario"])),
        ):
            reference = by_label.get((row["scenario"], row["n"], other)) if other else None
            if reference is None:
                continue
            row[key] = rate / reference["rate_per_s"]
            if key != "x_ref":
                continue
            row["ref"] = other
            paired = paired_ratio(
                row.get("rate_per_s_all") or [], reference.get("rate_per_s_all") or []
            )
            if paired is not None and reference is not row:
                row["x_ref"], row["x_ref_rounds"] = paired


def _asyncecho_rows(rows: list[dict[str, Any]], scenario: str) -> list[dict[str, Any]]:
    return [
        r
        for r in rows
        if r["scenario"] == scenario and r["label"].startswith("asyncecho") and "skipped" not in r
    ]


def _broken(row: dict[str, Any]) -> bool:
    """Nothing succeeded: no figure of this row can be judged."""
    return not row.get("ok")


def verdicts(rows: list[dict[str, Any]], deadline: float) -> list[dict[str, Any]]:
    """Each target of issue 7, measured: {scenario, target, measured, met}."""
    out: list[dict[str, Any]] = []

    def add(scenario: str, target: str, measured: str, met: bool | None) -> None:
        out.append({"scenario": scenario, "target": target, "measured": measured, "met": met})

    def add_for(row: dict[str, Any], target: str, measured: str, met: bool | None) -> None:
        if _broken(row) and row["scenario"] != "P5":
            errors = row.get("errors") or row.get("error")
            add(row["scenario"], target, f"no association succeeded ({errors})", False)
        else:
            add(row["scenario"], target, measured, met)

    def add_ratio(row: dict[str, Any], target: str) -> None:
        """x ref >= 0.8 (P1, P2, P6)."""
        ratio = row.get("x_ref")
        add_for(row, target, _num(ratio, "x"), None if ratio is None else ratio >= 0.8)

    p1 = _asyncecho_rows(rows, "P1")
    for row in p1:
        add_ratio(row, f"N={row['n']} {row['label']} >= 0.8x raw")
    if p1:
        top = max(r["n"] for r in p1)
        for row in (r for r in p1 if r["n"] == top):
            kb = row.get("rss_kb_per_in_flight")
            add_for(
                row,
                f"N={top} {row['label']} <= 12 KB RSS per in-flight association",
                _num(kb, " KB"),
                None if kb is None else kb <= 12.0,
            )
            failures = row.get("failures")
            add(
                "P1",
                f"N={top} {row['label']} 0 failures (target at N=10,000)",
                str(failures),
                None if failures is None else failures == 0,
            )
    for row in _asyncecho_rows(rows, "P2"):
        add_ratio(row, f"{row['label']} >= 0.8x raw")
    for row in _asyncecho_rows(rows, "P3"):
        p50 = row.get("p50_ms")
        add_for(
            row,
            f"{row['label']} median <= 2 ms per association",
            _num(p50, " ms"),
            None if p50 is None else p50 <= 2.0,
        )
    for row in _asyncecho_rows(rows, "P4"):
        median = row.get("median_s")
        add_for(
            row,
            "asyncecho echoscu median <= 0.15 s",
            _num(median, " s", 3),
            None if median is None else median <= 0.15 and row.get("failures") == 0,
        )
    for row in _asyncecho_rows(rows, "P5"):
        wall, records, n = row.get("wall_s"), row.get("records"), row["n"]
        wrong = row.get("failures")
        add(
            "P5",
            f"{row['label']}: <= {deadline + 10:g} s, {n} records, each of the right class",
            f"{_num(wall, ' s')}, {records} records, {wrong} misclassified",
            None if wall is None else wall <= deadline + 10 and records == n and wrong == 0,
        )
    for row in _asyncecho_rows(rows, "P6"):
        add_ratio(row, f"{row['label']} >= 0.8x the minimal SCP")
    return out


def _num(value: Any, unit: str = "", digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def _cell(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


COLUMNS = (
    ("scn", 3),
    ("N", 6),
    ("competitor", 30),
    ("server", 22),
    ("assoc/s", 8),
    ("p50 ms", 8),
    ("p99 ms", 8),
    ("fail", 5),
    ("cli µs/a", 9),
    ("peak MB", 7),
    ("KB/a", 5),
    ("srv µs/a", 8),
    ("x ref", 5),
    ("x pyn", 5),
)


def table(rows: list[dict[str, Any]]) -> str:
    def line(cells: list[str]) -> str:
        parts = []
        for (_, width), cell in zip(COLUMNS, cells, strict=True):
            parts.append(cell.ljust(width) if width >= 20 else cell.rjust(width))
        return "  ".join(parts).rstrip()

    out = [line([name for name, _ in COLUMNS]), line(["-" * w for _, w in COLUMNS])]
    for row in rows:
        if "skipped" in row:
            out.append(
                line(
                    [row["scenario"], _cell(row["n"]), row["label"], "skipped: " + row["skipped"]]
                    + [""] * (len(COLUMNS) - 4)
                )
            )
            continue
        peak = row.get("peak_rss_kb")
        failures = row.get("failures")
        if "error" in row and failures is None:
            failures = "ERR"
        out.append(
            line(
                [
                    row["scenario"],
                    _cell(row["n"]),
                    row["label"],
                    row.get("server", "-"),
                    _cell(row.get("rate_per_s")),
                    _cell(row.get("p50_ms"), 2),
                    _cell(row.get("p99_ms"), 2),
                    _cell(failures),
                    _cell(row.get("client_cpu_us_per_assoc")),
                    _cell(peak / 1024 if peak else None, 1),
                    _cell(row.get("rss_kb_per_in_flight"), 1),
                    _cell(row.get("server_cpu_us_per_assoc")),
                    _cell(row.get("x_ref"), 2),
                    _cell(row.get("x_pynetdicom"), 1),
                ]
            )
        )
    return "\n".join(out)


def verdict_lines(found: list[dict[str, Any]]) -> str:
    marks = {True: "met   ", False: "MISSED", None: "n/a   "}
    return "\n".join(
        f"{marks[v['met']]} {v['scenario']}  {v['target']}: {v['measured']}" for v in found
    )


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git(*args: str) -> str:
    try:
        out = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.decode(errors="replace").strip() or "unknown"


def machine() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "asyncecho": _version("asyncecho"),
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "git_dirty_src": bool(_git("status", "--porcelain", "src") not in ("", "unknown")),
        "uvloop": _version("uvloop"),
        "pynetdicom": _version("pynetdicom"),
        "pydicom": _version("pydicom"),
        "anyio": _version("anyio"),
        "dcmtk": version_of([DCMTK_STORESCP, "--version"]),
        "loadavg": Path("/proc/loadavg").read_text().split()[:3]
        if Path("/proc/loadavg").exists()
        else None,
    }


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1, sort_keys=False) + "\n")
