"""Start, pin, meter and stop the server processes the scenarios run against."""

from __future__ import annotations

import os
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

from . import procstat

REPO_ROOT = Path(__file__).resolve().parent.parent
DCMTK_STORESCP = "/usr/bin/storescp"  # by absolute path: pynetdicom's scripts shadow it
DCMTK_ECHOSCU = "/usr/bin/echoscu"


class ServerError(RuntimeError):
    pass


def child_env() -> dict[str, str]:
    """The environment for our Python children: the repo root importable."""
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + path if path else "")
    return env


def read_line(stream: IO[bytes], timeout: float) -> bytes:
    """One line from a child's pipe within `timeout` seconds (b"" if none)."""
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if not selector.select(timeout):
            return b""
    return stream.readline()


class ServerProcess:
    """A server in its own process, pinned to the server CPU where possible."""

    def __init__(
        self,
        name: str,
        process: subprocess.Popen[bytes],
        port: int,
        pinned: bool,
        stderr: IO[bytes],
        workdir: tempfile.TemporaryDirectory[str] | None = None,
    ) -> None:
        self.name = name
        self.process = process
        self.port = port
        self.pinned = pinned
        self._stderr = stderr
        self._workdir = workdir

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float | None:
        return procstat.cpu_seconds(self.process.pid)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stderr_tail(self) -> str:
        try:
            self._stderr.seek(0)
            return self._stderr.read().decode(errors="replace")[-2000:]
        except (OSError, ValueError):
            return ""

    def stop(self) -> None:
        process = self.process
        if process.poll() is None:
            if process.stdin is not None:
                try:
                    process.stdin.close()  # our servers exit when stdin closes
                except OSError:
                    pass
            else:
                process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if process.stdout is not None:
            process.stdout.close()
        self._stderr.close()
        if self._workdir is not None:
            self._workdir.cleanup()


def start_python_server(kind: str, loop: str, cpus: set[int] | None) -> ServerProcess:
    """`kind` is minimal, silent or asyncecho (see `scp_process`)."""
    stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by its owner
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.scp_process", kind, "--loop", loop],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        cwd=REPO_ROOT,
        env=child_env(),
    )
    pinned = procstat.pin(process.pid, cpus)
    assert process.stdout is not None
    line = read_line(process.stdout, 30.0)
    server = ServerProcess(f"{kind}/{loop}", process, 0, pinned, stderr)
    if not line.startswith(b"LISTENING "):
        tail = server.stderr_tail()
        server.stop()
        raise ServerError(f"{kind}/{loop} server did not start: {line!r} {tail}")
    server.port = int(line.split()[1])
    return server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening(port: int) -> bool:
    """Whether anything listens on `port` (from /proc/net/tcp, without
    connecting: a probe connection would be an association attempt)."""
    wanted = f":{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[1].endswith(wanted) and fields[3] == "0A":
                return True
    return False


def storescp_available() -> bool:
    return os.access(DCMTK_STORESCP, os.X_OK)


def start_storescp(cpus: set[int] | None) -> ServerProcess:
    """DCMTK storescp with Nagle on (its default: no TCP_NODELAY in its
    environment). It listens on every interface; we only connect to
    127.0.0.1."""
    workdir = tempfile.TemporaryDirectory(prefix="bench-storescp-")
    env = {k: v for k, v in os.environ.items() if k != "TCP_NODELAY"}
    stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by its owner
    last_error = ""
    for _attempt in range(5):  # the free port can be taken before storescp binds it
        port = _free_port()
        process = subprocess.Popen(
            [DCMTK_STORESCP, "-od", workdir.name, str(port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
        )
        pinned = procstat.pin(process.pid, cpus)
        end = time.monotonic() + 10.0
        while time.monotonic() < end and process.poll() is None:
            if _listening(port):
                return ServerProcess("storescp", process, port, pinned, stderr, workdir)
            time.sleep(0.02)
        if process.poll() is None:
            process.kill()
        process.wait(5)
        last_error = f"exit {process.returncode}"
    stderr.close()
    workdir.cleanup()
    raise ServerError(f"storescp did not start listening ({last_error})")


def version_of(argv: list[str]) -> str:
    if not shutil.which(argv[0]) and not os.access(argv[0], os.X_OK):
        return "not installed"
    try:
        out = subprocess.run(argv, capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (out.stdout or out.stderr).decode(errors="replace").strip().splitlines()
    return text[0].strip() if text else "unknown"
