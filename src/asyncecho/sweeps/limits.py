"""How many associations a sweep may hold open: one socket each, under the
process's open-file limit, with `FD_HEADROOM` descriptors left free.

Read only: a library does not change its caller's limits (the CLI, which
owns its process, raises the soft limit first: `asyncecho.cli.sweep`).

May import: `asyncecho.logs` and the standard library.
"""

from __future__ import annotations

import os

from asyncecho import logs

#: File descriptors a sweep leaves free beside those already open when it
#: starts: the caller's own files, the event loop's, and the resolver
#: threads' sockets (trio runs up to 40 lookups at once, each with a socket
#: to the name server and a file or two).
FD_HEADROOM = 100


def _open_fds() -> int | None:
    """How many file descriptors this process has open (None: cannot tell)."""
    for folder in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(folder))
        except OSError:
            continue
    return None


def socket_budget() -> tuple[int | None, int, int]:
    """(how many more sockets this process can open keeping `FD_HEADROOM`
    free, or None without a limit; the soft RLIMIT_NOFILE; the descriptors
    open now). Read only: a library does not change its caller's limits
    (the CLI, which owns its process, raises the soft limit first)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return None, 0, 0
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return None, soft, 0
    in_use = _open_fds()
    if in_use is None:  # pragma: no cover - no /proc or /dev/fd
        in_use = 3
    return max(1, soft - in_use - FD_HEADROOM), soft, in_use


def clamp_concurrency(requested: int) -> int:
    """At most as many associations in flight (one socket each) as the
    open-file limit leaves room for: beyond it every extra connect fails
    with EMFILE, which is our limit, not the targets' fault. Logged
    (`sweep.concurrency_clamped`) when it clamps."""
    budget, soft, in_use = socket_budget()
    if budget is None or requested <= budget:
        return requested
    logs.log(
        "sweep.concurrency_clamped",
        level="warning",
        requested=requested,
        concurrency=budget,
        fd_limit=soft,
        fds_open=in_use,
        fd_headroom=FD_HEADROOM,
    )
    return budget
