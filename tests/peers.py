"""Real third-party DICOM peers, started for real on loopback ports.

DCMTK is called by absolute path: pynetdicom installs console scripts named
`echoscu` / `storescp` that would shadow it on PATH (shared/MEASURED.md).
A missing peer skips the test, unless ASYNCECHO_REQUIRE_PEERS (set by
.ci/run) or CI=true is set: then it fails, so CI always runs them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

DCMTK_ECHOSCU = "/usr/bin/echoscu"
DCMTK_STORESCP = "/usr/bin/storescp"
DCMTK_DCMQRSCP = "/usr/bin/dcmqrscp"
ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"


def peers_required() -> bool:
    return bool(os.environ.get("ASYNCECHO_REQUIRE_PEERS")) or os.environ.get("CI") == "true"


def require_executable(path: str, what: str) -> str:
    if os.path.isfile(path) and os.access(path, os.X_OK):
        return path
    message = f"{what} is not installed ({path}); install it (apt-get install -y dcmtk orthanc)"
    if peers_required():
        pytest.fail(message)
    pytest.skip(message)


def require_pynetdicom() -> None:
    try:
        import pynetdicom  # noqa: F401
    except ImportError:
        message = "pynetdicom is not installed (pip install -e '.[test]')"
        if peers_required():
            pytest.fail(message)
        pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(
    port: int, process: subprocess.Popen[bytes] | None = None, timeout: float = 15.0
) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if process is not None and process.poll() is not None:
            out = process.stdout.read().decode(errors="replace") if process.stdout else ""
            raise RuntimeError(
                f"peer exited with {process.returncode} before listening: {out[-2000:]}"
            )
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout} s")


@dataclass
class Peer:
    port: int
    ae_title: str
    process: subprocess.Popen[bytes]
    host: str = "127.0.0.1"


def terminate(process: subprocess.Popen[Any]) -> int | None:
    """Stop a peer: SIGTERM, then SIGKILL if it has not exited within 5 s.
    Its exit status after SIGTERM; None if it had to be killed."""
    process.terminate()
    try:
        return process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
        return None


@contextlib.contextmanager
def _running(
    cmd: Sequence[str],
    port: int,
    ae_title: str,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
) -> Iterator[Peer]:
    process = subprocess.Popen(
        list(cmd),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=cwd,
    )
    try:
        wait_listening(port, process)
        yield Peer(port, ae_title, process)
    finally:
        terminate(process)
        if process.stdout:
            process.stdout.close()


@contextlib.contextmanager
def storescp(*, nodelay: bool = False, extra: Sequence[str] = ()) -> Iterator[Peer]:
    """DCMTK storescp: accepts Verification with any called AE title."""
    exe = require_executable(DCMTK_STORESCP, "DCMTK storescp")
    port = free_port()
    env = dict(os.environ)
    env.pop("TCP_NODELAY", None)
    if nodelay:
        env["TCP_NODELAY"] = "1"
    with (
        tempfile.TemporaryDirectory() as out,
        _running(
            [exe, "--output-directory", out, *extra, str(port)], port, "STORESCP", env
        ) as peer,
    ):
        yield peer


@contextlib.contextmanager
def dcmqrscp(ae_title: str = "QRSCP") -> Iterator[Peer]:
    """DCMTK dcmqrscp: rejects a called AE title not in its AETable."""
    exe = require_executable(DCMTK_DCMQRSCP, "DCMTK dcmqrscp")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp, "db")
        db.mkdir()
        config = Path(tmp, "dcmqrscp.cfg")
        config.write_text(
            textwrap.dedent(f"""\
            NetworkTCPPort  = {port}
            MaxPDUSize      = 16384
            MaxAssociations = 16
            HostTable BEGIN
            HostTable END
            VendorTable BEGIN
            VendorTable END
            AETable BEGIN
            {ae_title}  {db}  RW  (10, 1024mb)  ANY
            AETable END
            """)
        )
        with _running([exe, "-c", str(config), str(port)], port, ae_title) as peer:
            yield peer


@contextlib.contextmanager
def orthanc(ae_title: str = "ORTHANC", check_called_aet: bool = True) -> Iterator[Peer]:
    """Orthanc as a plain process from a JSON config in a temp dir."""
    exe = require_executable(ORTHANC, "Orthanc")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = {
            "Name": "asyncecho-test",
            "DicomAet": ae_title,
            "DicomPort": port,
            "DicomCheckCalledAet": check_called_aet,
            "StorageDirectory": str(Path(tmp, "storage")),
            "IndexDirectory": str(Path(tmp, "index")),
            "HttpServerEnabled": False,
            "RemoteAccessAllowed": False,
            "DicomAlwaysAllowEcho": True,
            "Plugins": [],
        }
        path = Path(tmp, "orthanc.json")
        path.write_text(json.dumps(config))
        with _running([exe, str(path)], port, ae_title, cwd=tmp) as peer:
            yield peer


_PYNETDICOM_SCP = """
import sys
from pynetdicom import AE, evt
from pynetdicom.sop_class import CTImageStorage, Verification
mode, port, ae_title = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ae = AE(ae_title=ae_title)
if mode == "no-verification":
    ae.add_supported_context(CTImageStorage)
else:
    ae.add_supported_context(Verification, ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1",
                             "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2"])
ae.require_called_aet = mode == "require-called-aet"
ae.start_server(("127.0.0.1", port), block=True)
"""


@contextlib.contextmanager
def pynetdicom_scp(mode: str = "verification", ae_title: str = "PYNETDICOM") -> Iterator[Peer]:
    """A pynetdicom AE as SCP in its own process. `mode`: verification,
    no-verification, require-called-aet."""
    require_pynetdicom()
    port = free_port()
    with _running(
        [sys.executable, "-c", _PYNETDICOM_SCP, mode, str(port), ae_title], port, ae_title
    ) as peer:
        yield peer


@contextlib.contextmanager
def pynetdicom_echoscp(extra: Sequence[str] = ()) -> Iterator[Peer]:
    """pynetdicom's own echoscp app."""
    require_pynetdicom()
    port = free_port()
    with _running(
        [sys.executable, "-m", "pynetdicom", "echoscp", str(port), *extra], port, "ECHOSCP"
    ) as peer:
        yield peer


def run_dcmtk_echoscu(
    port: int, *args: str, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    exe = require_executable(DCMTK_ECHOSCU, "DCMTK echoscu")
    return subprocess.run(
        [exe, *args, "127.0.0.1", str(port)], capture_output=True, text=True, timeout=timeout
    )


def run_pynetdicom_echoscu(
    port: int, *args: str, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    require_pynetdicom()
    return subprocess.run(
        [sys.executable, "-m", "pynetdicom", "echoscu", "127.0.0.1", str(port), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@contextlib.contextmanager
def silent_listener() -> Iterator[int]:
    """A TCP listener that accepts (via the backlog) and never says a word."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


def closed_port() -> int:
    """A loopback port with nothing listening (connection refused)."""
    return free_port()


@dataclass
class CliScp:
    """`python -m asyncecho echoscp` running as a subprocess."""

    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_for_log(self, text: str, timeout: float = 5.0) -> str:
        """The log once it holds `text` (the SCP logs after it answers)."""
        end = time.monotonic() + timeout
        while True:
            log = self.log()
            if text in log or time.monotonic() > end:
                return log
            time.sleep(0.02)

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")


@contextlib.contextmanager
def asyncecho_echoscp(*args: str, clean_exit: bool = False) -> Iterator[CliScp]:
    """Our own SCP as a separate process on 127.0.0.1, its stderr in a log
    file; stopped with SIGTERM at the end (`clean_exit`: and it must exit 0),
    and its log must never hold a traceback."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(tmp, "stderr.log")
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "asyncecho",
                    "echoscp",
                    str(port),
                    "--bind-address",
                    "127.0.0.1",
                    *args,
                ],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        scp = CliScp(port, process, log_path)
        try:
            wait_listening(port, process)
            yield scp
        finally:
            code = terminate(process) if process.poll() is None else None
            text = scp.log()
            assert "Traceback" not in text, text
            if clean_exit:
                assert code == 0, text
