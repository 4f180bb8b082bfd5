"""Where `asyncecho sweep`'s targets come from: the `Plan` main() settles
before the sweep starts, a regular target file (read twice: a first pass
that reports bad lines and counts what is left to do, then lazily as the
sweep pulls targets) or a pipe (read once, by a reader thread, as the sweep
goes), and the `--resume` file's done targets asked per line without
expanding a CIDR block.

May import: `asyncecho.sweeps` (targets, records, output) and the CLI's
option and log helpers; not `cli.sweep` (which imports this).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from asyncecho.cli.echoscu import Security
    from asyncecho.cli.output import CliLog
    from asyncecho.sweeps.output import EarlierOutput, TargetKey
    from asyncecho.sweeps.records import Target
    from asyncecho.sweeps.shards import Shard
    from asyncecho.sweeps.targets import TargetLine, TargetParser


@dataclass
class Plan:
    """What main() settled before the sweep starts."""

    args: argparse.Namespace
    lines: TextIO | None = None  # a regular file, rewound for the second pass
    pipe: IO[bytes] | None = None  # a pipe or terminal: read once, as the sweep goes
    total: int | None = None
    done: set[TargetKey] = field(default_factory=set)
    earlier: EarlierOutput | None = None  # --resume: the earlier output
    skipped: int = 0
    found: int = 0  # targets met on a pipe, skipped ones included
    concurrency: int = 256
    bad_line: str = ""  # set when --strict met a bad line on a pipe
    security: Security | None = None  # TLS context and user identity


def open_text(path: str) -> TextIO:
    # utf-8-sig: files saved by spreadsheets start with a BOM; a stray byte
    # becomes U+FFFD and so a bad line, never a traceback.
    return open(path, encoding="utf-8-sig", errors="replace", newline="")


def target_parser(args: argparse.Namespace) -> TargetParser:
    from asyncecho.sweeps.targets import TargetParser

    return TargetParser(
        port=args.port,
        called_ae=args.called_aet,
        calling_ae=args.calling_aet,
        max_cidr_hosts=args.max_cidr_hosts,
    )


def count_targets(plan: Plan, log: CliLog, lines: Iterable[str]) -> bool:
    """First pass over a regular file: report bad lines, count the targets
    still to do (of this shard, with --shard: a CIDR block is walked, not
    held, to hash each address). False if --strict met a bad line or the
    file names no target at all."""
    from asyncecho.sweeps.targets import BadLine

    args = plan.args
    shard: Shard | None = args.shard
    parser = target_parser(args)
    done = DoneIndex(plan.done)
    listed = total = skipped = bad = 0
    for raw in lines:
        entry = parser.feed(raw)
        if entry is None:
            continue
        if isinstance(entry, BadLine):
            bad += 1
            log.say("error" if args.strict else "warning", f"{args.targets}: {entry}")
            continue
        listed += entry.count
        if shard is None:
            mine = entry.count
        else:
            mine = sum(1 for target in entry.targets() if shard.holds(target))
        already = done.count_in(entry, shard)
        total += mine - already
        skipped += already
    plan.total, plan.skipped = total, skipped
    if bad and args.strict:
        log.say("error", f"{args.targets}: {bad} bad line(s); nothing was checked (--strict)")
        return False
    if not listed:
        # A sweep that checked nothing must not look like one that passed.
        why = f"every line of it is bad ({bad} bad line(s))" if bad else "it names no target"
        log.say("error", f"{args.targets}: nothing to check: {why}")
        return False
    if bad:
        log.say("warning", f"{args.targets}: skipped {bad} bad line(s)")
    if shard is not None and not total and not skipped:
        # Not an error: with more shards than targets some get none, and
        # their (empty) records still merge.
        log.say("warning", f"{args.targets}: none of its {listed} target(s) fall to shard {shard}")
    return True


class DoneIndex:
    """The --resume file's done targets, asked per target line without
    expanding a CIDR block: a single host is one look-up, a block is tested
    against the done addresses with its port and AE titles (a set bounded by
    the --resume file, not by the block)."""

    def __init__(self, done: set[TargetKey]) -> None:
        import ipaddress

        self.done = done
        self._addresses: dict[
            tuple[int, str | None, str | None],
            list[ipaddress.IPv4Address | ipaddress.IPv6Address],
        ] = {}
        for host, port, called, calling in done:
            try:
                address = ipaddress.ip_address(host)
            except ValueError:
                continue
            self._addresses.setdefault((port, called, calling), []).append(address)

    def count_in(self, entry: TargetLine, shard: Shard | None = None) -> int:
        """How many of the line's targets (of `shard`, if given) are done."""
        if not self.done:
            return 0
        host = entry.host
        if isinstance(host, str):
            return sum(
                1
                for target in entry.targets()
                if target.key in self.done and (shard is None or shard.holds(target))
            )
        from asyncecho.sweeps.records import Target
        from asyncecho.sweeps.targets import is_block_host

        key = (entry.port, entry.called_ae, entry.calling_ae)
        return sum(
            1
            for address in self._addresses.get(key, ())
            if is_block_host(address, host)
            and (shard is None or shard.holds(Target(str(address), *key)))
        )


def file_targets(plan: Plan) -> Iterator[Target]:
    from asyncecho.sweeps.targets import TargetLine

    assert plan.lines is not None
    shard: Shard | None = plan.args.shard
    parser = target_parser(plan.args)
    for raw in plan.lines:
        entry = parser.feed(raw)
        if isinstance(entry, TargetLine):  # bad lines were reported by count_targets()
            for target in entry.targets():
                if target.key not in plan.done and (shard is None or shard.holds(target)):
                    yield target


async def pipe_lines(pipe: IO[bytes]) -> AsyncIterator[str]:
    """Lines of a pipe or terminal, read by a daemon thread so that a slow
    writer never blocks the event loop, and a sweep stopped while it waits
    never waits for it. At most a few chunks are read ahead."""
    import asyncio
    import codecs
    import threading

    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[list[str] | None] = asyncio.Queue(maxsize=4)

    def put(item: list[str] | None) -> None:
        asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()

    def pump() -> None:
        decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
        read = getattr(pipe, "read1", pipe.read)
        pending = ""
        try:
            while True:
                chunk = read(65536)
                pieces = (pending + decoder.decode(chunk, final=not chunk)).split("\n")
                pending = pieces.pop()
                lines = [piece + "\n" for piece in pieces]
                if not chunk:
                    put([*lines, pending] if pending else lines)
                    break
                if lines:
                    put(lines)
        except Exception:  # the loop is gone or the pipe broke: end quietly
            pass
        try:
            put(None)
        except Exception:
            pass

    threading.Thread(target=pump, name="asyncecho-sweep-stdin", daemon=True).start()
    while (batch := await queue.get()) is not None:
        for line in batch:
            yield line


async def pipe_targets(
    plan: Plan, say: Callable[[str, str], None], stop: Callable[[], None]
) -> AsyncIterator[Target]:
    from asyncecho.sweeps.targets import BadLine

    assert plan.pipe is not None
    args = plan.args
    shard: Shard | None = args.shard
    parser = target_parser(args)
    async for raw in pipe_lines(plan.pipe):
        entry = parser.feed(raw)
        if entry is None:
            continue
        if isinstance(entry, BadLine):
            if args.strict:
                plan.bad_line = str(entry)
                say("error", f"{args.targets}: {entry}; stopping (--strict)")
                stop()
                return
            say("warning", f"{args.targets}: {entry}")
            continue
        for target in entry.targets():
            plan.found += 1  # whatever its shard: the pipe named a target
            if shard is not None and not shard.holds(target):
                continue
            if target.key in plan.done:
                plan.skipped += 1
            else:
                yield target


def open_targets(path: str) -> tuple[TextIO | None, IO[bytes] | None]:
    """A regular file as text (it will be read twice), anything else (a
    pipe, a terminal) as bytes for the reader thread."""
    import errno
    import stat

    if path == "-":
        if sys.stdin is None:  # started with standard input closed (`<&-`)
            raise OSError(errno.EBADF, "standard input is closed")
        fd = sys.stdin.fileno()
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return open(fd, encoding="utf-8-sig", errors="replace", newline="", closefd=False), None
        return None, sys.stdin.buffer
    if stat.S_ISREG(os.stat(path).st_mode):
        return open_text(path), None
    return None, open(path, "rb")
