"""User Identity negotiation (PS3.7 D.3.3.7), both sides.

- Request side: every identity type, as `serve()`'s `identity_check` sees
  it; the positive response on the result (or None).
- SCP side: a refused identity is A-ASSOCIATE-RJ (1, 1, 1) and an
  `scp.identity_refused` event; a failing or slow check refuses too; no
  logged value ever holds the passcode.
- pynetdicom both ways (`UserIdentityNegotiation` / `evt.EVT_USER_ID`).
- The CLI's identity options: secrets from the environment or a file, never
  printed (not even with `-d`), usage errors exit 2.

Library tests run under asyncio and trio; the CLI tests start `python -m
asyncecho` as a subprocess against a `serve()` in the test's loop, under
asyncio only (the subprocess is the same whatever the test's loop).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

import peers
from asyncecho import (
    AssociationRejected,
    EchoOptions,
    Target,
    disable_logging,
    echo,
    enable_logging,
    serve,
    sweep,
    uids,
    verify,
)
from asyncecho.identity import user_identity
from asyncecho.protocol.pdu import AssociateRQ
from asyncecho.protocol.pdu_items import (
    USER_IDENTITY_JWT,
    USER_IDENTITY_KERBEROS,
    USER_IDENTITY_SAML,
    USER_IDENTITY_USERNAME,
    USER_IDENTITY_USERNAME_PASSCODE,
    UserIdentityRQ,
)

LOCALHOST = "127.0.0.1"
OPTIONS = EchoOptions(connect_timeout=5.0, acse_timeout=5.0, dimse_timeout=5.0, network_timeout=5.0)
SLACK = 1.0
RUN_TIMEOUT = 30.0
#: the secret no log, dump or output may show
SECRET = "Tr0ub4dor&3-passcode"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
IDENTITY_REJECT = (1, 1, 1)  # permanent, service user, no reason given


# --- a logger that keeps what it is told -----------------------------------------------------


@dataclass
class Captured:
    events: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def _keep(self, level: str, event: str, fields: dict[str, Any]) -> None:
        self.events.append((level, event, fields))

    def debug(self, event: str, **fields: Any) -> None:
        self._keep("debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._keep("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._keep("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._keep("error", event, fields)

    def critical(self, event: str, **fields: Any) -> None:
        self._keep("critical", event, fields)

    def named(self, name: str) -> list[dict[str, Any]]:
        return [fields for _, event, fields in self.events if event == name]

    def level_of(self, name: str) -> str:
        return next(level for level, event, _ in self.events if event == name)

    def assert_secret_absent(self, secret: str = SECRET) -> None:
        """Neither the repr nor the str of any logged value shows it."""
        assert self.events
        for _, event, fields in self.events:
            for key, value in fields.items():
                for text in (repr(value), str(value)):
                    assert secret not in text, f"{event}.{key} shows the secret"
                    assert secret.encode().hex() not in text, f"{event}.{key} shows it in hex"


@pytest.fixture
def captured() -> Iterator[Captured]:
    capture = Captured()
    enable_logging(capture)
    try:
        yield capture
    finally:
        disable_logging()


# --- an identity check that remembers what it saw ----------------------------------------------


@dataclass
class Check:
    verdict: bool | bytes = True
    delay: float = 0.0
    error: Exception | None = None
    seen: list[tuple[UserIdentityRQ | None, AssociateRQ]] = field(default_factory=list)

    async def __call__(self, identity: UserIdentityRQ | None, rq: AssociateRQ) -> bool | bytes:
        self.seen.append((identity, rq))
        if self.delay:
            await anyio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return self.verdict

    @property
    def identity(self) -> UserIdentityRQ | None:
        assert len(self.seen) == 1, self.seen
        return self.seen[0][0]


KINDS: list[Any] = [
    pytest.param({"username": "jörg"}, USER_IDENTITY_USERNAME, "jörg".encode(), b"", id="username"),
    pytest.param(
        {"username": "alice", "passcode": SECRET},
        USER_IDENTITY_USERNAME_PASSCODE,
        b"alice",
        SECRET.encode(),
        id="username-passcode",
    ),
    pytest.param(
        {"kerberos_ticket": b"\x60\x82\x01\x00kerberos-ticket\x00"},
        USER_IDENTITY_KERBEROS,
        b"\x60\x82\x01\x00kerberos-ticket\x00",
        b"",
        id="kerberos",
    ),
    pytest.param(
        {"saml_assertion": "<saml:Assertion ID='a1'/>"},
        USER_IDENTITY_SAML,
        b"<saml:Assertion ID='a1'/>",
        b"",
        id="saml",
    ),
    pytest.param(
        {"saml_assertion": b"<saml:Assertion ID='a2'/>"},
        USER_IDENTITY_SAML,
        b"<saml:Assertion ID='a2'/>",
        b"",
        id="saml-bytes",
    ),
    pytest.param({"jwt": JWT}, USER_IDENTITY_JWT, JWT.encode(), b"", id="jwt"),
]


# --- the request side, through serve()'s identity_check ---------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(("kwargs", "identity_type", "primary", "secondary"), KINDS)
async def test_identity_check_sees_the_request(
    kwargs: dict[str, Any], identity_type: int, primary: bytes, secondary: bytes
) -> None:
    check = Check()
    async with serve(identity_check=check) as server:
        result = await echo(
            LOCALHOST,
            server.port,
            options=OPTIONS,
            calling_ae="IDSCU",
            user_identity=user_identity(**kwargs),
        )
    assert result.ok
    assert result.user_identity_response is None  # not asked for
    identity = check.identity
    assert identity is not None
    assert identity.identity_type == identity_type
    assert identity.primary_field == primary
    assert identity.secondary_field == secondary
    assert identity.positive_response_requested is False
    assert check.seen[0][1].calling_ae == "IDSCU"


@pytest.mark.anyio
async def test_identity_check_without_an_identity() -> None:
    check = Check()
    async with serve(identity_check=check) as server:
        assert (await echo(LOCALHOST, server.port, options=OPTIONS)).ok
        refuse_anonymous = Check(verdict=False)
        async with serve(identity_check=refuse_anonymous) as strict:
            with pytest.raises(AssociationRejected) as info:
                await echo(LOCALHOST, strict.port, options=OPTIONS)
    assert check.identity is None
    assert refuse_anonymous.identity is None
    error = info.value
    assert (error.result, error.source, error.reason) == IDENTITY_REJECT


@pytest.mark.anyio
@pytest.mark.parametrize(("kwargs", "identity_type", "primary", "secondary"), KINDS)
async def test_positive_response(
    kwargs: dict[str, Any], identity_type: int, primary: bytes, secondary: bytes
) -> None:
    check = Check(verdict=b"server-response-\x00\xff")
    async with serve(identity_check=check) as server:
        result = await echo(
            LOCALHOST,
            server.port,
            options=OPTIONS,
            user_identity=user_identity(**kwargs, positive_response=True),
        )
    assert result.ok
    assert result.user_identity_response == b"server-response-\x00\xff"
    identity = check.identity
    assert identity is not None and identity.positive_response_requested
    assert identity.identity_type == identity_type


@pytest.mark.anyio
async def test_positive_response_edge_cases() -> None:
    # Accepted with True: the AC still carries the (empty) response item.
    async with serve(identity_check=Check(verdict=True)) as server:
        result = await echo(
            LOCALHOST,
            server.port,
            options=OPTIONS,
            user_identity=user_identity(username="alice", positive_response=True),
        )
    assert result.ok and result.user_identity_response == b""
    # Not requested: bytes from the check are not sent.
    async with serve(identity_check=Check(verdict=b"unasked")) as server:
        result = await echo(
            LOCALHOST, server.port, options=OPTIONS, user_identity=user_identity(username="alice")
        )
    assert result.ok and result.user_identity_response is None
    # No identity_check at all: accepted, no response even if asked for.
    async with serve() as server:
        result = await echo(
            LOCALHOST,
            server.port,
            options=OPTIONS,
            user_identity=user_identity(jwt=JWT, positive_response=True),
        )
    assert result.ok and result.user_identity_response is None


@pytest.mark.anyio
async def test_refused_identity(captured: Captured) -> None:
    check = Check(verdict=False)
    async with serve(identity_check=check) as server:
        with pytest.raises(AssociationRejected) as info:
            await echo(
                LOCALHOST,
                server.port,
                options=OPTIONS,
                calling_ae="MALLORY",
                user_identity=user_identity(username="mallory", passcode=SECRET),
            )
        assert server.accepted_total == 0
        # A refusal is final for that association only.
        assert (await verify(LOCALHOST, server.port, options=OPTIONS)).outcome == "rejected"
    error = info.value
    assert (error.result, error.source, error.reason) == IDENTITY_REJECT
    assert error.outcome == "rejected"
    refused = captured.named("scp.identity_refused")
    assert len(refused) == 2
    first = refused[0]
    assert first["calling_ae"] == "MALLORY"
    assert first["identity_type"] == USER_IDENTITY_USERNAME_PASSCODE
    assert first["peer"].startswith(f"{LOCALHOST}:")
    assert refused[1]["identity_type"] is None  # the second client sent no identity
    assert captured.level_of("scp.identity_refused") == "warning"
    rejected = captured.named("scp.associate.rejected")
    assert rejected and rejected[0]["calling_ae"] == "MALLORY"
    # The passcode went over the wire, but into no log.
    assert check.seen[0][0] is not None and check.seen[0][0].secondary_field == SECRET.encode()
    captured.assert_secret_absent()


@pytest.mark.anyio
async def test_identity_check_that_raises_refuses(captured: Captured) -> None:
    check = Check(error=RuntimeError(f"directory lookup failed for passcode {SECRET}"))
    async with serve(identity_check=check) as server:
        with pytest.raises(AssociationRejected) as info:
            await echo(
                LOCALHOST,
                server.port,
                options=OPTIONS,
                user_identity=user_identity(username="alice", passcode=SECRET),
            )
    assert (info.value.result, info.value.source, info.value.reason) == IDENTITY_REJECT
    failed = captured.named("scp.identity_check_failed")
    assert [f["error"] for f in failed] == ["RuntimeError"]
    assert captured.level_of("scp.identity_check_failed") == "error"
    # Not even the exception's message, which here quotes the secret.
    captured.assert_secret_absent()


@pytest.mark.anyio
async def test_slow_identity_check_refuses_within_the_acse_timeout(captured: Captured) -> None:
    acse_timeout = 0.3
    check = Check(delay=30.0)
    async with serve(identity_check=check, acse_timeout=acse_timeout) as server:
        start = time.monotonic()
        with pytest.raises(AssociationRejected) as info:
            await echo(
                LOCALHOST,
                server.port,
                options=OPTIONS,
                user_identity=user_identity(username="alice", passcode=SECRET),
            )
        elapsed = time.monotonic() - start
    assert (info.value.result, info.value.source, info.value.reason) == IDENTITY_REJECT
    assert acse_timeout - 0.05 <= elapsed < acse_timeout + SLACK
    assert [f["error"] for f in captured.named("scp.identity_check_failed")] == ["TimeoutError"]
    captured.assert_secret_absent()


@pytest.mark.anyio
async def test_identity_over_sweep() -> None:
    check = Check(verdict=b"ok")
    async with (
        serve(identity_check=check) as server,
        sweep(
            [Target(LOCALHOST, server.port)],
            deadline=5.0,
            user_identity=user_identity(username="alice", passcode=SECRET),
        ) as records,
    ):
        outcomes = [record.outcome async for record in records]
    assert outcomes == ["success"]
    assert check.identity is not None and check.identity.secondary_field == SECRET.encode()


def test_user_identity_builder() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        user_identity()
    with pytest.raises(ValueError, match="exactly one"):
        user_identity(username="alice", jwt=JWT)
    with pytest.raises(ValueError, match="passcode goes with a username"):
        user_identity(jwt=JWT, passcode=SECRET)
    identity = user_identity(username="alice", passcode=SECRET, positive_response=True)
    assert identity.positive_response_requested
    assert SECRET not in repr(identity) and SECRET not in str(identity)


def test_dump_masks_the_passcode() -> None:
    from asyncecho.cli.pdu_dump import dump_rq
    from asyncecho.protocol.negotiation import build_rq

    identity = user_identity(username="alice", passcode=SECRET)
    rq = build_rq(calling_ae="A", called_ae="B", extra_user_items=(identity,))
    text = "\n".join(dump_rq(rq))
    assert "Primary field: alice" in text
    assert "Secondary field: ********" in text
    assert SECRET not in text
    token = "\n".join(
        dump_rq(build_rq(calling_ae="A", called_ae="B", extra_user_items=(user_identity(jwt=JWT),)))
    )
    assert JWT not in token and f"<{len(JWT)} bytes>" in token


# --- pynetdicom, both ways -------------------------------------------------------------------


def pynetdicom_scu(
    port: int, identity_type: int, primary: bytes, secondary: bytes | None
) -> tuple[bool, bytes | None]:
    """pynetdicom as SCU with a `UserIdentityNegotiation` (positive
    response requested): (established, the server response it received)."""
    from pynetdicom import AE
    from pynetdicom.pdu_primitives import UserIdentityNegotiation

    item = UserIdentityNegotiation()
    item.user_identity_type = identity_type
    item.positive_response_requested = True
    item.primary_field = primary
    if secondary is not None:
        item.secondary_field = secondary
    ae = AE(ae_title="PYNETSCU")
    ae.add_requested_context(uids.VERIFICATION)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 5
    assoc = ae.associate(LOCALHOST, port, ext_neg=[item])
    try:
        if not assoc.is_established:
            return False, None
        status = assoc.send_c_echo()
        assert int(status.Status) == 0
        response = assoc.acceptor.user_identity
        if response is None or response.server_response is None:
            return True, None
        return True, bytes(response.server_response)
    finally:
        if assoc.is_established:
            assoc.release()
        ae.shutdown()


@pytest.mark.peer
@pytest.mark.anyio
async def test_pynetdicom_scu_sends_identity() -> None:
    peers.require_pynetdicom()
    check = Check(verdict=b"welcome, alice")
    async with serve(identity_check=check) as server:
        established, response = await anyio.to_thread.run_sync(
            pynetdicom_scu, server.port, USER_IDENTITY_USERNAME_PASSCODE, b"alice", SECRET.encode()
        )
        assert established and response == b"welcome, alice"
        identity = check.identity
        assert identity is not None
        assert (identity.identity_type, identity.primary_field, identity.secondary_field) == (
            USER_IDENTITY_USERNAME_PASSCODE,
            b"alice",
            SECRET.encode(),
        )
        assert identity.positive_response_requested
        assert check.seen[0][1].calling_ae == "PYNETSCU"
    async with serve(identity_check=Check(verdict=False)) as server:
        established, _ = await anyio.to_thread.run_sync(
            pynetdicom_scu, server.port, USER_IDENTITY_JWT, JWT.encode(), None
        )
    assert not established


_PYNETDICOM_IDENTITY_SCP = """
import json, sys
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification
port, record = int(sys.argv[1]), sys.argv[2]
def on_user_id(event):
    with open(record, "a") as out:
        out.write(json.dumps({
            "type": event.user_id_type,
            "primary": event.primary_field.hex(),
            "secondary": (event.secondary_field or b"").hex(),
        }) + "\\n")
    if event.primary_field == b"mallory":
        return False, None
    return True, b"response"
ae = AE(ae_title="PYNETDICOM")
ae.add_supported_context(Verification)
ae.start_server(("127.0.0.1", port), block=True, evt_handlers=[(evt.EVT_USER_ID, on_user_id)])
"""


@dataclass
class IdentityScp:
    port: int
    record: Path

    def seen(self) -> list[dict[str, Any]]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines()]


@contextlib.contextmanager
def pynetdicom_identity_scp(tmp_path: Path) -> Iterator[IdentityScp]:
    peers.require_pynetdicom()
    port = peers.free_port()
    record = tmp_path / "identities.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-c", _PYNETDICOM_IDENTITY_SCP, str(port), str(record)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        peers.wait_listening(port, process)
        yield IdentityScp(port, record)
    finally:
        peers.terminate(process)


@pytest.mark.peer
@pytest.mark.anyio
async def test_pynetdicom_scp_evt_user_id(tmp_path: Path) -> None:
    with pynetdicom_identity_scp(tmp_path) as scp:
        jwt = await echo(
            LOCALHOST,
            scp.port,
            options=OPTIONS,
            user_identity=user_identity(jwt=JWT, positive_response=True),
        )
        passcode = await echo(
            LOCALHOST,
            scp.port,
            options=OPTIONS,
            user_identity=user_identity(username="alice", passcode=SECRET, positive_response=True),
        )
        with pytest.raises(AssociationRejected) as info:
            await echo(
                LOCALHOST,
                scp.port,
                options=OPTIONS,
                user_identity=user_identity(username="mallory"),
            )
        seen = scp.seen()
    assert jwt.ok and jwt.user_identity_response == b"response"
    # pynetdicom answers only Kerberos, SAML and JWT with a server response.
    assert passcode.ok and passcode.user_identity_response is None
    # pynetdicom rejects a refused identity as transient, ACSE provider, no
    # reason (2, 2, 1), not as serve() does (1, 1, 1).
    assert (info.value.result, info.value.source, info.value.reason) == (2, 2, 1)
    assert seen == [
        {"type": USER_IDENTITY_JWT, "primary": JWT.encode().hex(), "secondary": ""},
        {
            "type": USER_IDENTITY_USERNAME_PASSCODE,
            "primary": b"alice".hex(),
            "secondary": SECRET.encode().hex(),
        },
        {"type": USER_IDENTITY_USERNAME, "primary": b"mallory".hex(), "secondary": ""},
    ]


# --- the CLI ---------------------------------------------------------------------------------

#: the CLI runs in its own process; the test's loop only hosts the SCP
cli_backend = pytest.mark.parametrize("anyio_backend", ["asyncio"])


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


async def asyncecho_cli(*args: str, env: Mapping[str, str] | None = None) -> Run:
    full_env = dict(os.environ)
    full_env.update(env or {})
    with anyio.fail_after(RUN_TIMEOUT):
        done = await anyio.run_process(
            [sys.executable, "-m", "asyncecho", *args], env=full_env, check=False
        )
    run = Run(done.returncode, done.stdout.decode(), done.stderr.decode())
    assert "Traceback" not in run.output, run.output
    assert SECRET not in run.output, run.output
    return run


async def echoscu(port: int, *args: str, env: Mapping[str, str] | None = None) -> Run:
    return await asyncecho_cli(
        "echoscu", LOCALHOST, str(port), "-ta", "5", "-tn", "5", *args, env=env
    )


@contextlib.asynccontextmanager
async def checked_scp(check: Check) -> AsyncIterator[int]:
    async with serve(identity_check=check, acse_timeout=5.0) as server:
        yield server.port


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "passcode.txt"
    path.write_text(SECRET + "\n")
    path.chmod(0o600)
    return path


@pytest.mark.peer
@cli_backend
@pytest.mark.anyio
async def test_cli_passcode_from_environment() -> None:
    check = Check()
    async with checked_scp(check) as port:
        run = await echoscu(
            port, "--username", "alice", "--passcode-env", "PACS_PASS", env={"PACS_PASS": SECRET}
        )
    assert run.returncode == 0, run.output
    identity = check.identity
    assert identity is not None
    assert identity.identity_type == USER_IDENTITY_USERNAME_PASSCODE
    assert (identity.primary_field, identity.secondary_field) == (b"alice", SECRET.encode())


@pytest.mark.peer
@cli_backend
@pytest.mark.anyio
async def test_cli_passcode_from_file_with_debug_dump(secret_file: Path) -> None:
    check = Check()
    async with checked_scp(check) as port:
        run = await echoscu(port, "--username", "alice", "--passcode-file", str(secret_file), "-d")
    assert run.returncode == 0, run.output
    assert check.identity is not None and check.identity.secondary_field == SECRET.encode()
    # The dump names the user and masks the passcode (and SECRET is nowhere:
    # asyncecho_cli checks every run).
    assert "Requested User Identity Negotiation:" in run.output
    assert "Primary field: alice" in run.output
    assert "Secondary field: ********" in run.output


@pytest.mark.peer
@cli_backend
@pytest.mark.anyio
async def test_cli_jwt_file_and_positive_response(tmp_path: Path) -> None:
    token = tmp_path / "token.jwt"
    token.write_text(JWT + "\n")
    check = Check(verdict=b"signed-response")
    async with checked_scp(check) as port:
        run = await echoscu(port, "--jwt-file", str(token), "--positive-response", "-d")
    assert run.returncode == 0, run.output
    identity = check.identity
    assert identity is not None
    assert identity.identity_type == USER_IDENTITY_JWT
    assert identity.primary_field == JWT.encode()
    assert identity.positive_response_requested
    assert "Positive response requested: Yes" in run.output
    assert f"User Identity Negotiation Response: <{len(b'signed-response')} bytes>" in run.output
    assert JWT not in run.output  # a token is a secret too


@pytest.mark.peer
@cli_backend
@pytest.mark.anyio
async def test_cli_refused_identity() -> None:
    async with checked_scp(Check(verdict=False)) as port:
        run = await echoscu(
            port, "--username", "alice", "--passcode-env", "PACS_PASS", env={"PACS_PASS": SECRET}
        )
    assert run.returncode == 1
    assert run.stderr.splitlines() == [
        "E: Association Rejected",
        "E: Result: Rejected Permanent, Source: Service User",
        "E: Reason: No reason given",
    ]


@pytest.mark.peer
@cli_backend
@pytest.mark.anyio
async def test_cli_sweep_with_identity(tmp_path: Path) -> None:
    accept, refuse = Check(), Check(verdict=False)
    async with (
        serve(identity_check=accept) as good,
        serve(identity_check=refuse) as bad,
    ):
        targets = tmp_path / "targets.txt"
        targets.write_text(f"{LOCALHOST}:{good.port}\n{LOCALHOST}:{bad.port}\n")
        run = await asyncecho_cli(
            "sweep",
            str(targets),
            "-q",
            "--deadline",
            "5",
            "--username",
            "alice",
            "--passcode-env",
            "PACS_PASS",
            env={"PACS_PASS": SECRET},
        )
    assert run.returncode == 1
    records = [json.loads(line) for line in run.stdout.splitlines()]
    assert sorted(r["outcome"] for r in records) == ["rejected", "success"]
    assert accept.identity is not None and accept.identity.secondary_field == SECRET.encode()


USAGE_ERRORS = [
    pytest.param(
        ("--username", "alice", "--passcode-env", "ASYNCECHO_TEST_UNSET_VARIABLE"),
        "ASYNCECHO_TEST_UNSET_VARIABLE",
        id="unset-variable",
    ),
    pytest.param(("--positive-response",), "--positive-response", id="positive-response-alone"),
    pytest.param(("--passcode-env", "PACS_PASS"), "--username", id="passcode-without-username"),
    pytest.param(
        ("--username", "alice", "--passcode-file", "/nonexistent/passcode"),
        "cannot read the passcode",
        id="unreadable-file",
    ),
    pytest.param(
        ("--username", "alice", "--jwt-env", "PACS_PASS"), "not both", id="username-and-jwt"
    ),
]


@pytest.mark.peer
@cli_backend
@pytest.mark.anyio
@pytest.mark.parametrize(("args", "mentions"), USAGE_ERRORS)
async def test_cli_identity_usage_errors(args: tuple[str, ...], mentions: str) -> None:
    env = {"PACS_PASS": SECRET}
    with peers.silent_listener() as port:  # never reached: the options fail first
        run = await echoscu(port, *args, env=env)
        swept = await asyncecho_cli("sweep", "-", *args, env=env)
    assert run.returncode == 2, run.output
    assert mentions in run.stderr
    assert run.stdout == ""
    assert swept.returncode == 2, swept.output
    assert mentions in swept.stderr
