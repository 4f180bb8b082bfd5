"""Our machine's limits are ours, not the peer's (issue #13, section 2): out
of file descriptors, a connect is `local-error` (LocalResourceError), never
`unreachable`; and `sweep()` keeps its sockets within the open-file limit,
so that no target is blamed for it.

For real, not with mocks: each case runs in a subprocess whose soft
RLIMIT_NOFILE is lowered (the test process's own limit is left alone), on
asyncio, uvloop and trio.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

BACKENDS = ["asyncio", "uvloop", "trio"]

_PRELUDE = """
import errno, json, os, resource, socket, sys
import anyio
import asyncecho
# Imported while descriptors are free: an import opens files too, and the
# API loads its modules on first use.
import asyncecho.client, asyncecho.server, asyncecho.sweeps.engine
import asyncecho.transport.anyio_channel

BACKEND = sys.argv[1]


def run(main):
    if BACKEND == "uvloop":
        return anyio.run(main, backend="asyncio", backend_options={"use_uvloop": True})
    return anyio.run(main, backend=BACKEND)


def open_fds():
    return len(os.listdir("/proc/self/fd"))
"""


def run_script(body: str, backend: str) -> dict[str, object]:
    if backend == "uvloop":
        pytest.importorskip("uvloop")
    source = _PRELUDE + textwrap.dedent(body)
    done = subprocess.run(
        [sys.executable, "-c", source, backend], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


_OUT_OF_DESCRIPTORS = """
async def main():
    async with asyncecho.serve("127.0.0.1", 0) as server:
        port = server.port
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        # No descriptor left for the client's socket (the server's
        # connections are never needed: the connect fails first).
        resource.setrlimit(resource.RLIMIT_NOFILE, (open_fds() + 8, hard))
        hold = []
        try:
            while True:
                hold.append(socket.socket())
        except OSError as exc:
            assert exc.errno == errno.EMFILE, exc
        found = {}
        result = await asyncecho.verify("127.0.0.1", port)
        found["verify"] = [result.outcome, type(result.error).__name__]
        try:
            await asyncecho.echo("127.0.0.1", port)
        except asyncecho.EchoError as error:
            found["echo"] = [
                type(error).__name__,
                error.outcome,
                error.errno,
                isinstance(error, OSError),
                isinstance(error, asyncecho.ConnectionFailed),
            ]
        for sock in hold:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        found["after"] = (await asyncecho.verify("127.0.0.1", port)).outcome
    print(json.dumps(found))


run(main)
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_out_of_file_descriptors_is_a_local_error_not_the_peer(backend: str) -> None:
    found = run_script(_OUT_OF_DESCRIPTORS, backend)
    assert found["verify"] == ["local-error", "LocalResourceError"]
    assert found["echo"] == ["LocalResourceError", "local-error", 24, True, False]
    assert found["after"] == "success"  # nothing left broken once descriptors are back


_SWEEP_UNDER_A_LOW_LIMIT = """
import collections

# The limit an operator may well have (ulimit -n 256), set before anything opens.
resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
events = []


class Recorder:
    def __getattr__(self, level):
        return lambda event, **fields: events.append([level, event, fields])


async def main():
    asyncecho.enable_logging(Recorder())
    # Live but silent peers: the kernel completes each connect from the
    # listen backlog, nothing ever answers (and this process holds no
    # descriptor per connection for them, only the client sockets).
    listeners = []
    for _ in range(3):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(4096)
        listeners.append(sock)
    targets = [
        asyncecho.Target("127.0.0.1", listeners[i % 3].getsockname()[1]) for i in range(400)
    ]
    job = asyncecho.sweep(targets, concurrency=1000, deadline=0.3)
    outcomes = collections.Counter()
    async with job as records:
        async for record in records:
            outcomes[record.outcome] += 1
    clamped = [fields for level, event, fields in events if event == "sweep.concurrency_clamped"]
    levels = [level for level, event, fields in events if event == "sweep.concurrency_clamped"]
    print(json.dumps({
        "outcomes": outcomes,
        "concurrency": job.concurrency,
        "requested": job.requested_concurrency,
        "clamped": clamped,
        "levels": levels,
        "limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    }))


run(main)
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_sweep_keeps_within_the_open_file_limit_and_blames_no_target(backend: str) -> None:
    found = run_script(_SWEEP_UNDER_A_LOW_LIMIT, backend)
    # Every target was live and silent: each costs its deadline, and none is
    # recorded as unreachable (or local-error) because of our own limit.
    assert found["outcomes"] == {"timeout-deadline": 400}
    assert found["limit"] == 256  # a library leaves its caller's limits alone
    assert found["requested"] == 1000
    concurrency = found["concurrency"]
    assert isinstance(concurrency, int) and 1 <= concurrency < 256 - 100
    assert found["levels"] == ["warning"]
    events = found["clamped"]
    assert isinstance(events, list) and len(events) == 1
    clamped: dict[str, object] = events[0]
    assert clamped["requested"] == 1000 and clamped["concurrency"] == concurrency
    assert clamped["fd_limit"] == 256
