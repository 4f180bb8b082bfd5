"""Shards of a target list: `--shard K/N` checks only the targets that fall
to shard K of N, so that N machines given the same list split it between
them without talking to each other.

A target falls to a shard by a stable hash (BLAKE2b, not Python's `hash()`,
which is salted per process) of its normalised form: the called AE title,
the host (an IP address in its canonical text, a host name in lower case
without a trailing dot) and the port. Nothing else enters it, so the split
does not depend on the order of the list, on what else is in it, on the
calling AE title or on the machine; shards 1..N are disjoint and together
complete. A CIDR block is sharded per address, as it is expanded.

K counts from 1, as masscan's `--shards x/y` and Playwright's `--shard=x/y`
do (a Kubernetes Indexed Job's `JOB_COMPLETION_INDEX` counts from 0: the
CLI's `--shard auto/N` adds the 1).

May import: `sweeps.records` and the standard library; nothing that does
I/O.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass

from asyncecho.sweeps.records import Target

#: The most shards a list can be split into: far beyond any fleet of
#: machines, and small enough that a typo (`1/10000000000`) is caught.
MAX_SHARDS = 1_000_000


def shard_key(target: Target) -> bytes:
    """The normalised (called AE, host, port) that decides the shard."""
    host = target.host
    try:
        host = ipaddress.ip_address(host.removeprefix("[").removesuffix("]")).compressed
    except ValueError:
        host = host.lower().rstrip(".")  # DNS names ignore case (RFC 4343)
    return f"{target.called_ae or ''}\0{host}\0{target.port}".encode()


def shard_of(target: Target, count: int) -> int:
    """The shard (1..count) that `target` falls to."""
    digest = hashlib.blake2b(shard_key(target), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count + 1


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard `index` of `count` (1 <= index <= count)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS:
            raise ValueError(f"the number of shards must be 1 to {MAX_SHARDS}, not {self.count}")
        if not 1 <= self.index <= self.count:
            raise ValueError(f"the shard must be 1 to {self.count}, not {self.index}")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """`K/N`; raises ValueError saying what is wrong."""
        index, slash, count = text.strip().partition("/")
        if not slash or not _whole(index) or not _whole(count):
            raise ValueError(f"expected K/N with whole numbers 1 <= K <= N, not {text!r}")
        return cls(int(index), int(count))

    def holds(self, target: Target) -> bool:
        return self.count == 1 or shard_of(target, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def _whole(text: str) -> bool:
    text = text.strip()
    return text.isascii() and text.isdigit()
