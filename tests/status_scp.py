"""A real SCP that answers every C-ECHO with a chosen status: pynetdicom in
its own process (a third-party peer, not our own server), for the CLI tests
of a non-success status (`check`, `echoscu --json`)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator

import peers

_SCRIPT = """
import sys
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification
status, port = int(sys.argv[1], 16), int(sys.argv[2])
ae = AE(ae_title="STATUSSCP")
ae.add_supported_context(Verification)
ae.start_server(("127.0.0.1", port), block=True,
                evt_handlers=[(evt.EVT_C_ECHO, lambda event: status)])
"""


@contextlib.contextmanager
def status_scp(status: int) -> Iterator[peers.Peer]:
    """pynetdicom accepting any called AE title, answering C-ECHO with `status`."""
    peers.require_pynetdicom()
    port = peers.free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", _SCRIPT, f"{status:04X}", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        peers.wait_listening(port, process)
        yield peers.Peer(port, "STATUSSCP", process)
    finally:
        peers.terminate(process)
