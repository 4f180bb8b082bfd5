"""The HTML report (issue 16, part 3): the aggregation worked out from
records (counts, latency bins, phases, failed targets grouped, the
implementation inventory, the table's data), the page's escaping of hostile
values from peers, its self-containedness, and `asyncecho report` /
`asyncecho sweep --report` as commands. The page in a real browser is in
test_report_browser.py."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from asyncecho import SweepRecord, Target
from asyncecho.protocol.uids import IMPLEMENTATION_CLASS_UID
from asyncecho.report import aggregate, render_html
from asyncecho.report.aggregate import COLUMNS, detail_pattern, histogram_bins, stack_of
from asyncecho.report.charts import histogram, phases
from asyncecho.results import Timings
from peers import free_port, wait_listening

STARTED = datetime(2026, 12, 2, 8, 0, tzinfo=timezone.utc)
DCMTK_UID = "1.2.276.0.7230010.3.0.3.6.7"

#: A version name as a hostile peer could send it (PS3.7 allows 16 bytes of
#: any printable text; the reader takes whatever the record holds).
HOSTILE = "</script><script>document.title='pwned'</script><img src=x onerror=alert(1)>"


def row(
    host: str,
    outcome: str = "success",
    *,
    total: float | None = 5.0,
    detail: str = "",
    uid: str | None = None,
    version: str | None = None,
    syntax: str | None = None,
    port: int = 104,
    phases_ms: tuple[float, float, float, float] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    ok = outcome == "success"
    if phases_ms is None and ok:
        phases_ms = (1.0, 2.0, 1.0, 1.0)
    seconds = total / 1000.0 if total is not None else None
    if phases_ms:
        connect, associate, echo, release = (value / 1000.0 for value in phases_ms)
        timings = Timings(connect, associate, echo, release, seconds)
    else:
        timings = Timings(total=seconds)
    record = SweepRecord(
        Target(host, port, "ANY-SCP", "ECHOSCU"),
        outcome,
        STARTED,
        detail=detail,
        timings=timings,
        status=0 if ok else None,
        peer_implementation_class_uid=uid,
        peer_implementation_version_name=version,
        transfer_syntax=syntax,
    )
    return {**record.as_dict(), **extra}


def sample() -> list[dict[str, Any]]:
    rows = [
        row(f"10.0.0.{i}", uid=DCMTK_UID, version="OFFIS_DCMTK_367", syntax="1.2.840.10008.1.2")
        for i in range(1, 5)
    ]
    rows += [
        row(
            "10.0.1.1",
            uid=IMPLEMENTATION_CLASS_UID,
            version="ASYNCECHO_010",
            syntax="1.2.840.10008.1.2.1",
        ),
        row("10.0.1.2", uid="1.2.3.4", version=None, syntax="1.2.840.10008.1.2.1", total=40.0),
    ]
    rows += [
        row(f"10.0.2.{i}", "refused", total=1.0, detail=f"connection to 10.0.2.{i}:104 refused")
        for i in range(1, 4)
    ]
    rows += [
        row(
            "10.0.3.1",
            "timeout-deadline",
            total=2000.0,
            detail="overall deadline timed out after 2 s",
        ),
        row(
            "10.0.3.2",
            "status-0x0122",
            uid=DCMTK_UID,
            version="OFFIS_DCMTK_367",
            detail="SOP Class Not Supported",
        ),
        row("10.0.3.3", "cancelled", total=None),
    ]
    return rows


def test_counts_per_outcome_ordered_by_count() -> None:
    report = aggregate(sample())
    assert (report.total, report.ok, report.failed) == (12, 6, 6)
    assert [(o.outcome, o.count, o.kind) for o in report.outcomes] == [
        ("success", 6, "ok"),
        ("refused", 3, "failed"),
        ("cancelled", 1, "cancelled"),
        ("status-0x0122", 1, "status"),
        ("timeout-deadline", 1, "timeout"),
    ]
    assert report.outcomes[0].share == pytest.approx(50.0)


def test_latency_percentiles_and_phases_of_successes_only() -> None:
    report = aggregate(sample())
    assert report.latency == {"p50": 5.0, "p90": 40.0, "p99": 40.0, "max": 40.0}
    assert [(p.phase, p.count, p.p50, p.max) for p in report.phases] == [
        ("connect", 6, 1.0, 1.0),
        ("associate", 6, 2.0, 2.0),
        ("echo", 6, 1.0, 1.0),
        ("release", 6, 1.0, 1.0),
    ]


def test_histogram_bins_are_r10_on_a_log_scale_and_hold_every_timed_record() -> None:
    bins = histogram_bins([1.0, 1.3, 5.0, 40.0], [2000.0])
    assert bins[0].low == 1.0 and bins[0].high == 1.25
    assert bins[-1].low == 2000.0 and bins[-1].high == 2500.0
    assert sum(b.ok for b in bins) == 4 and sum(b.failed for b in bins) == 1
    for earlier, later in itertools.pairwise(bins):
        assert earlier.high == later.low
        assert 1.2 < later.low / earlier.low < 1.3  # about ten bins a decade
    # 1.3 falls in [1.25, 1.6), 40 in [40, 50)
    assert [(b.low, b.ok) for b in bins if b.ok] == [(1.0, 1), (1.25, 1), (5.0, 1), (40.0, 1)]
    assert histogram_bins([], []) == []
    report = aggregate(sample())
    # cancelled records are not timed; every other record with a total is
    assert sum(b.ok + b.failed for b in report.histogram) == 11


def test_failed_targets_grouped_by_outcome_with_their_detail() -> None:
    report = aggregate(sample())
    groups = {g.outcome: g for g in report.failures}
    assert list(groups) == ["refused", "cancelled", "status-0x0122", "timeout-deadline"]
    refused = groups["refused"]
    assert refused.count == 3
    assert refused.patterns == [("connection to HOST:PORT refused", 3)]
    assert refused.examples[0] == ("ANY-SCP@10.0.2.1:104", "connection to 10.0.2.1:104 refused")
    assert groups["status-0x0122"].examples == [("ANY-SCP@10.0.3.2:104", "SOP Class Not Supported")]


def test_failure_examples_are_capped_but_counted() -> None:
    rows = [row(f"10.1.{i // 250}.{i % 250}", "refused", detail="refused") for i in range(500)]
    (group,) = aggregate(rows).failures
    assert group.count == 500 and len(group.examples) == 20


def test_detail_pattern_takes_the_targets_own_address_out() -> None:
    assert detail_pattern(
        {"host": "::1", "port": 11112, "detail": "connection to [::1]:11112 refused"}
    ) == ("connection to HOST:PORT refused")
    assert detail_pattern({"host": "10.0.0.1", "port": 104, "detail": None}) == ""


def test_implementation_inventory() -> None:
    report = aggregate(sample())
    assert [(i.version, i.uid, i.stack, i.count) for i in report.implementations] == [
        ("OFFIS_DCMTK_367", DCMTK_UID, "DCMTK", 5),  # the 0x0122 peer completed an association
        ("", "1.2.3.4", "", 1),
        ("ASYNCECHO_010", IMPLEMENTATION_CLASS_UID, "asyncecho", 1),
    ]
    assert [(s.value, s.name, s.count) for s in report.transfer_syntaxes] == [
        ("1.2.840.10008.1.2", "Implicit VR Little Endian", 4),
        ("1.2.840.10008.1.2.1", "Explicit VR Little Endian", 2),
    ]
    assert report.tls_versions is None  # a sweep's records carry none


def test_tls_versions_when_records_carry_them() -> None:
    rows = [
        row("10.0.0.1", tls_version="TLSv1.3"),
        row("10.0.0.2", tls_version="TLSv1.3"),
        row("10.0.0.3", tls_version=None),
        row("10.0.0.4"),
    ]
    versions = aggregate(rows).tls_versions
    assert versions is not None
    assert [(v.name, v.count) for v in versions] == [("TLSv1.3", 2), ("none (plain TCP)", 1)]


def test_stack_by_uid_root() -> None:
    assert stack_of("1.2.276.0.7230010.3.0.3.6.7") == "DCMTK"
    assert stack_of("1.2.826.0.1.3680043.9.3811.2.1.0") == "pynetdicom"
    assert stack_of("1.2.276.0.72300100") == ""  # a longer arc is not under the root
    assert stack_of("") == ""


def test_table_payload_pools_repeated_strings_and_keeps_every_row() -> None:
    rows = sample()
    table = aggregate(rows).table
    names = [c[0] for c in table["columns"]]
    assert names == [c[0] for c in COLUMNS]
    assert len(table["rows"]) == len(rows)
    strings = table["strings"]
    outcome = names.index("outcome")
    assert [strings[r[outcome]] for r in table["rows"]] == [r["outcome"] for r in rows]
    assert strings.count("success") == 1 and strings.count("OFFIS_DCMTK_367") == 1
    started = names.index("started")
    assert {r[started] for r in table["rows"]} == {0}
    assert table["base"] == int(STARTED.timestamp() * 1000)


def test_rows_read_back_from_csv_aggregate_the_same(tmp_path: Path) -> None:
    from asyncecho.sweeps.output import CsvWriter, EarlierOutput

    rows = sample()
    path = tmp_path / "records.csv"
    with path.open("w", newline="") as stream:
        writer = CsvWriter(stream)
        for item in rows:
            writer.write_row(item)
    back = [fields for _, _, fields in filter(None, EarlierOutput(str(path)).records())]
    assert aggregate(back).outcomes == aggregate(rows).outcomes
    assert aggregate(back).implementations == aggregate(rows).implementations


def test_charts_geometry_stays_inside_the_drawing() -> None:
    report = aggregate(sample())
    for chart in (histogram(report.histogram), phases(report.phases)):
        assert chart.rects
        for rect in chart.rects:
            assert rect.x >= 0 and rect.x + rect.width <= chart.width + 0.01
            assert rect.y >= 0 and rect.y + rect.height <= chart.height + 0.01
    assert histogram([]).rects == [] and phases([]).rects == []


# --- the page --------------------------------------------------------------------------


def test_hostile_values_from_peers_cannot_inject_markup() -> None:
    rows = sample()
    rows.append(
        row(
            "10.0.9.9",
            uid="1.2.3",
            version=HOSTILE,
            peer_aet="<b>x</b>",
            detail="</script><script>alert(2)</script>",
        )
    )
    rows.append(row("10.0.9.8", "refused", detail="<!-- ' \" & </style>"))
    page = render_html(rows)
    # no tag of the peer's survives: every < of theirs is escaped
    assert "<script>document.title" not in page
    assert "<img src=x" not in page
    assert "</script><script>alert(2)" not in page
    assert "<!-- '" not in page
    assert page.count("<script") == 2  # the table's data and our own script
    assert "&lt;/script&gt;&lt;script&gt;document.title=&#39;pwned&#39;" in page
    # the table's data is JSON that the script reads back intact
    data = re.search(r'<script type="application/json" id="records">(.*?)</script>', page, re.S)
    assert data is not None
    assert HOSTILE in json.loads(data.group(1))["strings"]


class Elements(HTMLParser):
    """Every start tag of a page, with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def test_the_page_asks_no_other_host_for_anything() -> None:
    page = render_html(sample())
    parser = Elements()
    parser.feed(page)
    loading = {
        "link",
        "img",
        "iframe",
        "object",
        "embed",
        "audio",
        "video",
        "source",
        "image",
        "use",
    }
    assert not [tag for tag, _ in parser.tags if tag in loading]
    for tag, attrs in parser.tags:
        for name in (
            "src",
            "href",
            "xlink:href",
            "action",
            "formaction",
            "srcset",
            "poster",
            "data",
        ):
            value = attrs.get(name)
            assert value is None or value.startswith("#"), (tag, name, value)
    assert "http://" not in page and "https://" not in page
    assert "url(" not in page and "@import" not in page
    policy = [
        a["content"] for t, a in parser.tags if a.get("http-equiv") == "Content-Security-Policy"
    ]
    assert policy and "default-src 'none'" in str(policy[0])
    assert "unsafe-inline" not in str(policy[0])


def test_an_empty_report_renders() -> None:
    page = render_html([])
    assert 'id="count-total">0<' in page


# --- the commands ----------------------------------------------------------------------


def asyncecho(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asyncecho", *args], capture_output=True, text=True, timeout=120
    )


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_report_command_merges_shards_by_merges_rules(tmp_path: Path) -> None:
    first = write_jsonl(
        tmp_path / "a.jsonl", [row("10.0.0.1", "refused", detail="no"), row("10.0.0.2")]
    )
    second = write_jsonl(tmp_path / "b.jsonl", [row("10.0.0.1"), row("10.0.0.2", "cancelled")])
    out = tmp_path / "report.html"
    done = asyncecho("report", first, second, "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "report: " in done.stderr and "(2 targets," in done.stderr
    assert "1 target(s) found in more than one file" not in done.stderr  # two targets, both in both
    assert "2 target(s) found in more than one file" in done.stderr
    page = out.read_text()
    # the later success replaced the refusal; the cancelled record replaced nothing
    assert 'id="count-ok">2<' in page and 'id="count-failed">0<' in page


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["report", "missing.jsonl", "-o", "r.html"], "cannot read missing.jsonl"),
        (["report", "targets.txt", "-o", "r.html"], "not a sweep output"),
        (["report", "empty.jsonl", "-o", "r.html"], "nothing to report"),
        (["report", "a.jsonl", "-o", "a.jsonl"], "writing would destroy it"),
        (["report", "a.jsonl"], "required: -o"),
    ],
)
def test_report_usage_errors_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "targets.txt").write_text("10.0.0.1\n")
    (tmp_path / "empty.jsonl").write_text("")
    write_jsonl(tmp_path / "a.jsonl", [row("10.0.0.1")])
    done = asyncecho(*args)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


def test_report_that_cannot_be_written_exits_1(tmp_path: Path) -> None:
    records = write_jsonl(tmp_path / "a.jsonl", [row("10.0.0.1")])
    done = asyncecho("report", records, "-o", str(tmp_path / "no" / "r.html"))
    assert done.returncode == 1
    assert (
        done.stderr.startswith("E: cannot write the report to") and "Traceback" not in done.stderr
    )


@pytest.fixture(scope="module")
def scp_port() -> Iterator[int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "asyncecho", "echoscp", str(port), "--bind-address", "127.0.0.1"],
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


def test_sweep_report_from_the_same_records(tmp_path: Path, scp_port: int) -> None:
    targets = tmp_path / "targets.txt"
    targets.write_text(f"127.0.0.1:{scp_port}\nX@127.0.0.1:{scp_port}\n127.0.0.2:{free_port()}\n")
    records, page = tmp_path / "out.jsonl", tmp_path / "report.html"
    done = asyncecho(
        "sweep", str(targets), "-o", str(records), "--report", str(page), "--deadline", "5"
    )
    assert done.returncode == 1, done.stderr  # one target refused
    assert "report: " in done.stderr
    written = [json.loads(line) for line in records.read_text().splitlines()]
    html = page.read_text()
    data = re.search(r'id="records">(.*?)</script>', html, re.S)
    assert data is not None
    table = json.loads(data.group(1))
    names = [c[0] for c in table["columns"]]
    host, port, outcome = (names.index(n) for n in ("host", "port", "outcome"))
    assert sorted(
        (r[host], r[port], table["strings"][r[outcome]]) for r in table["rows"]
    ) == sorted((r["host"], r["port"], r["outcome"]) for r in written)
    assert 'id="count-total">3<' in html and 'id="count-ok">2<' in html
    assert "ASYNCECHO_" in html  # the inventory names our own SCP

    # resumed into stdout: the report holds the carried-over records too
    resumed = tmp_path / "resumed.html"
    done = asyncecho(
        "sweep", str(targets), "--resume", str(records), "--report", str(resumed), "-q"
    )
    assert 'id="count-total">3<' in resumed.read_text(), done.stderr


@pytest.mark.parametrize("clash", ["targets", "output"])
def test_sweep_report_over_its_own_files_is_a_usage_error(tmp_path: Path, clash: str) -> None:
    targets = tmp_path / "targets.txt"
    targets.write_text("127.0.0.1:1\n")
    out = tmp_path / "out.jsonl"
    report = targets if clash == "targets" else out
    done = asyncecho("sweep", str(targets), "-o", str(out), "--report", str(report))
    assert done.returncode == 2
    assert "writing would destroy it" in done.stderr
    assert targets.read_text() == "127.0.0.1:1\n"
