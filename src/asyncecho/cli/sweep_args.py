"""`asyncecho sweep`'s command line: its options, help text and the
argparse types only it uses.

May import: `asyncecho._version` and the other CLI modules' option helpers
(`cli.argtypes`, `cli.echoscu`, `cli.security`); nothing that does I/O.
"""

from __future__ import annotations

import argparse
import math
import os
from typing import TYPE_CHECKING

from asyncecho._version import __version__
from asyncecho.cli import argtypes
from asyncecho.cli.echoscu import add_ae_options, add_timeouts
from asyncecho.cli.security import add_client_tls_options, add_identity_options

if TYPE_CHECKING:
    from asyncecho.sweeps.shards import Shard

PROG = "asyncecho sweep"

#: Where `--shard auto/N` takes its shard from: the index a Kubernetes
#: Indexed Job gives each of its pods (0 to completions - 1).
SHARD_INDEX_ENV = "JOB_COMPLETION_INDEX"

DESCRIPTION = (
    "Verify DICOM connectivity to many peers at once: one association, C-ECHO "
    "and release per target, at most --concurrency at a time on one event "
    "loop. Writes one record per target as it finishes (JSONL, or CSV) and a "
    "summary on stderr."
)
EPILOG = """\
target file: one target per line, [CALLED_AET@]host[:port], IPv6 as [addr]:port;
'#' comments and blank lines are ignored; a host may be a CIDR block
(127.0.0.0/28). Or CSV with a header: host,port,called_aet,calling_aet.

--shard K/N checks only the targets that fall to shard K of N (1 <= K <= N)
by a stable hash of (called AE title, host, port): N machines given the same
list split it, disjoint and complete, whatever its order. --shard auto/N
takes K from $JOB_COMPLETION_INDEX + 1 (a Kubernetes Indexed Job's index,
which counts from 0). `asyncecho merge` combines the shards' records.

--concurrency is kept below the open-file limit (ulimit -n), which is raised
up to its hard limit when needed: each association holds one socket.

exit status: 0 if every target succeeded (or with --exit-zero, whatever the
targets said); 1 if any failed or the records could not be written; 2 for usage errors (including a bad line with --strict, and
nothing to check: no target, or every line bad); 130 when stopped by
SIGINT/SIGTERM (the in-flight targets are recorded as cancelled; --resume
finishes the rest). With --resume, the summary and the status cover the
earlier records too."""


def _positive_seconds(text: str) -> float:
    value = argtypes.seconds(text)  # finite, at most argtypes.MAX_SECONDS
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0: {text!r}")
    return value


def _rate(text: str) -> float:
    """Associations per second: finite, and not so low that the pause
    between two starts exceeds the longest limit an option takes."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid rate: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number: {text!r}")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0: {text!r}")
    if value < 1.0 / argtypes.MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"must be at least {1.0 / argtypes.MAX_SECONDS:.3g}: {text!r}")
    return value


def _shard(text: str) -> Shard:
    """`K/N`, or `auto/N`: K from $JOB_COMPLETION_INDEX + 1."""
    from asyncecho.sweeps.shards import Shard

    spec = text
    index, slash, count = text.partition("/")
    if slash and index.strip() == "auto":
        value = os.environ.get(SHARD_INDEX_ENV)
        if value is None:
            raise argparse.ArgumentTypeError(
                f"{text!r}: auto takes the shard from ${SHARD_INDEX_ENV} "
                "(a Kubernetes Indexed Job's index), which is not set"
            )
        if not (value.isascii() and value.isdigit()):
            raise argparse.ArgumentTypeError(
                f"{text!r}: ${SHARD_INDEX_ENV} is {value!r}, not an index from 0"
            )
        spec = f"{int(value) + 1}/{count}"
    try:
        return Shard.parse(spec)
    except ValueError as exc:
        if spec != text:
            raise argparse.ArgumentTypeError(
                f"{text!r}: ${SHARD_INDEX_ENV}={value} is shard {spec}: {exc} "
                "(the Job's completions must be N)"
            ) from None
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        prefix_chars="-+",
        usage=f"{PROG} [options] TARGETS",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    params = parser.add_argument_group("Parameters")
    params.add_argument("targets", metavar="TARGETS", help="file of targets, or - for stdin")

    general = parser.add_argument_group("General Options")
    general.add_argument(
        "--version",
        action="version",
        version=f"asyncecho sweep v{__version__}",
        help="print version information and exit",
    )
    general.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress line and no summary (warnings and errors still print)",
    )

    targets = parser.add_argument_group("Target Options")
    targets.add_argument(
        "--port",
        metavar="[n]umber",
        type=argtypes.port,
        default=104,
        help="port of targets that give none (default: 104)",
    )
    targets.add_argument(
        "--max-cidr-hosts",
        metavar="[n]umber",
        type=argtypes.positive,
        default=4096,
        help="a CIDR block with more hosts than n is a bad line (default: 4096)",
    )
    targets.add_argument(
        "--strict",
        action="store_true",
        help="a bad line is an error (exit 2) instead of a warning and skipped",
    )
    targets.add_argument(
        "--resume",
        metavar="FILE",
        help="skip targets that already have a final (not cancelled) record in "
        "FILE, the output of an earlier sweep; the output starts with those "
        "records (one per target), then the new ones; -o FILE rewrites FILE",
    )

    targets.add_argument(
        "--shard",
        metavar="K/N",
        type=_shard,
        help="check only the targets of shard K of N (1 <= K <= N), by a stable "
        "hash of called AE title, host and port; auto/N: K is "
        f"${SHARD_INDEX_ENV} + 1 (a Kubernetes Indexed Job)",
    )

    network = parser.add_argument_group("Network Options")
    add_ae_options(
        network, called_help="called AE title of targets that give none (default: ANY-SCP)"
    )
    add_timeouts(network)

    sweep = parser.add_argument_group("Sweep Options")
    sweep.add_argument(
        "-c",
        "--concurrency",
        metavar="[n]umber",
        type=argtypes.positive,
        default=256,
        help="at most n associations at once (default: 256; kept below the open-file limit)",
    )
    sweep.add_argument(
        "--rate",
        metavar="[n]umber",
        type=_rate,
        help="start at most n associations per second (default: no limit)",
    )
    sweep.add_argument(
        "--deadline",
        metavar="[s]econds",
        type=_positive_seconds,
        default=10.0,
        help="per target, from connect to release (default: 10 s)",
    )

    sweep.add_argument(
        "--exit-zero",
        action="store_true",
        help="exit 0 when the sweep ran to the end even if targets failed (the "
        "records say which): for a runner that retries a command that exits "
        "non-zero, such as a Kubernetes Job; usage and write errors keep theirs",
    )

    output = parser.add_argument_group("Output Options")
    output.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write the records to FILE (default: stdout)",
    )
    output.add_argument(
        "--format",
        choices=["jsonl", "csv"],
        help="jsonl (default) or csv (the default when FILE ends in .csv)",
    )
    output.add_argument(
        "--report",
        metavar="HTML",
        help="when the sweep ends, also write its records as one self-contained "
        'HTML report (needs the report extra: pip install "asyncecho[report]")',
    )
    add_client_tls_options(parser)
    add_identity_options(parser)
    return parser
