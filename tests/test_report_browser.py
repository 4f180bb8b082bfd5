"""The report in a real headless browser (Debian's `chromium`): a page of
10,000 targets renders, the DOM after its script shows the counts, the
inventory and the table, a hostile version name stays text, nothing is
fetched from any host, and a screenshot is not blank.

"Nothing fetched": Chromium runs with every request sent to a loopback
trap that records it and answers nothing (`--proxy-server`, loopback
included). Chromium's own services (component updates, sign-in) still call
home through it on start; those hosts are told apart and left out, and a
control page with one external image shows that the trap does see a page's
requests.

A missing Chromium skips, unless ASYNCECHO_REQUIRE_PEERS or CI=true (as
for the DICOM peers): then it fails.
"""

from __future__ import annotations

import re
import shutil
import socket
import struct
import subprocess
import threading
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from asyncecho.report import render_html
from peers import peers_required
from test_report import DCMTK_UID, HOSTILE, row

#: Hosts of Chromium's own background services (component updater, sign-in,
#: network time), which call home whatever page is open.
BROWSER_SERVICES = ("google.com", "googleapis.com", "gstatic.com", "gvt1.com")

TARGETS = 10_000


def chromium_path() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if Path(path).is_file():
        return path
    message = "chromium is not installed (apt-get install -y chromium)"
    if peers_required():
        pytest.fail(message)
    pytest.skip(message)


class Trap:
    """A loopback listener that records the first bytes of every
    connection (an HTTP proxy request names its host) and closes it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self.requests: list[str] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2.0)
                try:
                    head = conn.recv(512)
                except OSError:
                    head = b""
                self.requests.append(head.decode("latin-1").split("\r\n", 1)[0])

    def page_requests(self) -> list[str]:
        def host(line: str) -> str:
            target = line.split(" ")[1] if " " in line else line
            target = re.sub(r"^[a-z]+://", "", target)
            return target.split("/", 1)[0].rsplit(":", 1)[0]

        return [
            line
            for line in self.requests
            if not any(
                host(line) == name or host(line).endswith("." + name) for name in BROWSER_SERVICES
            )
        ]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def trap() -> Iterator[Trap]:
    listener = Trap()
    try:
        yield listener
    finally:
        listener.close()


def browse(page: Path, tmp_path: Path, trap: Trap, *mode: str) -> str:
    done = subprocess.run(
        [
            chromium_path(),
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--proxy-server=http://127.0.0.1:{trap.port}",
            "--proxy-bypass-list=<-loopback>",  # loopback through the trap too
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            "--disable-sync",
            "--window-size=900,700",
            *mode,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def records(trap_port: int) -> list[dict[str, Any]]:
    """TARGETS records: a third succeeded (three stacks), a third refused,
    a third timed out; one success with a hostile version name and peer AE
    that point at the trap."""
    rows: list[dict[str, Any]] = []
    stacks = [
        (DCMTK_UID, "OFFIS_DCMTK_367"),
        ("1.2.826.0.1.3680043.9.3811.2.1.0", "PYNETDICOM_210"),
        ("1.2.40.0.13.1.3", "dcm4che-5.31.0"),
    ]
    for i in range(TARGETS - 1):
        host = f"10.{i // 62500}.{i // 250 % 250}.{i % 250 + 1}"
        kind = i % 3
        if kind == 0:
            uid, version = stacks[i % 9 // 3]
            rows.append(
                row(host, total=2.0 + i % 50, uid=uid, version=version, syntax="1.2.840.10008.1.2")
            )
        elif kind == 1:
            rows.append(row(host, "refused", total=1.0, detail=f"connection to {host}:104 refused"))
        else:
            rows.append(
                row(
                    host,
                    "timeout-deadline",
                    total=2000.0,
                    detail="overall deadline timed out after 2 s",
                )
            )
    hostile = HOSTILE.replace("src=x", f"src=http://127.0.0.1:{trap_port}/hostile")
    rows.append(row("10.9.9.9", uid="1.2.3", version=hostile, peer_aet="<b>x</b>"))
    return rows


def test_the_report_in_a_real_browser(tmp_path: Path, trap: Trap) -> None:
    chromium_path()
    page = tmp_path / "report.html"
    page.write_text(render_html(records(trap.port)), encoding="utf-8")

    dom = browse(page, tmp_path, trap, "--dump-dom")
    # the script ran to its end over every record (under the page's CSP)
    assert f'data-ready="{TARGETS}"' in dom
    assert re.search(r'id="count-total">10,000<', dom)
    assert re.search(r'id="count-ok">3,334<', dom)
    assert re.search(r'id="count-failed">6,666<', dom)
    assert re.search(r'<span id="shown"[^>]*>1\u2013100 of 10,000</span>', dom)
    body = re.search(r'<tbody id="rows">(.*?)</tbody>', dom, re.S)
    assert body is not None and body.group(1).count("<tr") == 100
    inventory = re.search(r'<table class="counts" id="implementations">(.*?)</table>', dom, re.S)
    assert inventory is not None
    for version in ("OFFIS_DCMTK_367", "PYNETDICOM_210", "dcm4che-5.31.0"):
        assert version in inventory.group(1)
    assert "DCMTK" in inventory.group(1) and "pynetdicom" in inventory.group(1)
    # the hostile values are text on the page, not elements
    assert "&lt;/script&gt;&lt;script&gt;document.title" in inventory.group(1)
    assert "<title>asyncecho sweep report</title>" in dom
    assert "pwned" not in dom.split("<body", 1)[0]
    assert "<img" not in dom and "<b>x</b>" not in dom

    assert trap.page_requests() == []

    shot = tmp_path / "report.png"
    browse(page, tmp_path, trap, f"--screenshot={shot}")
    width, height, pixels = decode_png(shot.read_bytes())
    assert (width, height) == (900, 700)
    colours = Counter(pixels)
    _, plain = colours.most_common(1)[0]
    inked = len(pixels) - plain
    assert len(colours) > 16, "a blank or near-blank screenshot"
    assert inked > 0.02 * len(pixels)
    # the outcome colours are on screen: the success green and failure red
    assert (0x2E, 0x7D, 0x32) in colours and (0xC6, 0x28, 0x28) in colours
    assert trap.page_requests() == []


def test_the_trap_sees_a_pages_requests(tmp_path: Path, trap: Trap) -> None:
    """The control for the test above: a page that loads an external image
    is seen."""
    chromium_path()
    page = tmp_path / "control.html"
    page.write_text('<!DOCTYPE html><img src="http://report-control.invalid/x.png">')
    browse(page, tmp_path, trap, "--dump-dom")
    assert any("report-control.invalid" in line for line in trap.page_requests())


# --- a PNG decoder for the screenshot (no imaging library needed) --------------------


def decode_png(data: bytes) -> tuple[int, int, list[tuple[int, int, int]]]:
    """Width, height and the RGB pixels of an 8-bit RGB or RGBA PNG
    (what Chromium writes), without interlace."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    offset, idat = 8, bytearray()
    width = height = channels = 0
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        offset += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    raw = zlib.decompress(bytes(idat))
    stride = width * channels
    previous = bytearray(stride)
    pixels: list[tuple[int, int, int]] = []
    for y in range(height):
        start = y * (stride + 1)
        method, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for x in range(stride):
            left = line[x - channels] if x >= channels else 0
            up = previous[x]
            corner = previous[x - channels] if x >= channels else 0
            if method == 1:
                line[x] = (line[x] + left) & 0xFF
            elif method == 2:
                line[x] = (line[x] + up) & 0xFF
            elif method == 3:
                line[x] = (line[x] + (left + up) // 2) & 0xFF
            elif method == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                predictor = left if pa <= pb and pa <= pc else (up if pb <= pc else corner)
                line[x] = (line[x] + predictor) & 0xFF
        pixels.extend((line[x], line[x + 1], line[x + 2]) for x in range(0, stride, channels))
        previous = line
    return width, height, pixels
