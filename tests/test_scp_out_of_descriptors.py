"""`serve()` out of file descriptors (issue 13, section 2): a flood of idle
connections past the process's descriptor limit. Accepting pauses (one
warning per interval, no traceback per backlog slot, no spinning), the
server stays up, and it serves again once descriptors are free.

The server runs in a subprocess with a low RLIMIT_NOFILE, so that the test
process keeps its own descriptors.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import subprocess
import sys
import time

import pytest

SERVER = r"""
import resource, sys
import anyio
import asyncecho
from asyncecho import logs

backend, use_uvloop = sys.argv[1], sys.argv[2] == "1"
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (48, hard))


class Printer:
    def __getattr__(self, level):
        return lambda event, **fields: print(level, event, flush=True)


logs.enable_logging(Printer())


async def main():
    async with asyncecho.serve("127.0.0.1", 0, acse_timeout=60, network_timeout=60) as server:
        print("port", server.port, flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)


anyio.run(main, backend=backend, backend_options={"use_uvloop": True} if use_uvloop else {})
"""

BACKENDS = {"asyncio": ("asyncio", "0"), "uvloop": ("asyncio", "1"), "trio": ("trio", "0")}
# uvloop keeps libuv's accept loop, which out of descriptors sheds the
# pending connections itself (no spin, no traceback, nothing to log).
PAUSE_LOGGED = {"asyncio": 1, "uvloop": 0, "trio": 1}
FLOOD = 80
#: how long the flood is held past the limit: long enough for a storm of
#: accept errors to show (the old loop logged thousands a second)
HELD = 0.5


class Lines:
    """The server's stdout, line by line, each read bounded (a server that
    never says what is awaited fails the test rather than hang it)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.fd = proc.stdout.fileno()
        self.buffer = b""

    def next(self, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            assert left > 0, "no line from the server in time"
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                chunk = os.read(self.fd, 4096)
                assert chunk, "the server process ended"
                self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode().strip()


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_flood_past_descriptor_limit_pauses_accepting(backend: str) -> None:
    if backend == "uvloop":
        pytest.importorskip("uvloop")
    name, uvloop = BACKENDS[backend]
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, name, uvloop],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    stdout = Lines(proc)
    flood: list[socket.socket] = []
    try:
        first = stdout.next()
        while not first.startswith("port "):
            first = stdout.next()
        port = int(first.split()[1])
        for _ in range(FLOOD):
            flood.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        lines: list[str] = []
        if PAUSE_LOGGED[backend]:
            lines.append(stdout.next())
            while lines[-1] != "warning scp.accept_paused":
                lines.append(stdout.next())
        time.sleep(HELD)  # an observation window, not a wait for a condition
        for sock in flood:
            sock.close()
        flood.clear()
        # Descriptors are free again: a C-ECHO is served.
        check = subprocess.run(
            [
                sys.executable,
                "-c",
                "import anyio, asyncecho, sys;"
                f"r = anyio.run(asyncecho.verify, '127.0.0.1', {port});"
                "print(r.outcome); sys.exit(0 if r else 1)",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert check.returncode == 0, check.stdout + check.stderr
        assert proc.stdin is not None
        proc.stdin.write(b"\n")
        proc.stdin.flush()
        rest, raw_err = proc.communicate(timeout=30)
        out, err = (stdout.buffer + rest).decode(), raw_err.decode()
    finally:
        for sock in flood:
            sock.close()
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    events = lines + out.splitlines()
    # One warning for the interval, not one per accept attempt, and no
    # traceback from the loop's own accept loop.
    assert events.count("warning scp.accept_paused") == PAUSE_LOGGED[backend], events
    assert "out of system resource" not in err
    assert "Traceback" not in err, err
    assert "info scp.stopped" in events
