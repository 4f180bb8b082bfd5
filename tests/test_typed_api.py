"""The public API is typed (issue 14): every option of echo(), verify(),
associate(), serve() and sweep() is an explicit keyword-only parameter with
its type and its default, so that a misspelt or mistyped option is a
`mypy --strict` error, help() lists them, and `dir(asyncecho)` the API."""

from __future__ import annotations

import ast
import inspect
import pydoc
import ssl
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import MISSING, Field, fields
from pathlib import Path
from typing import Any

import pytest

import asyncecho
from asyncecho import EchoOptions, ServerOptions, client, identity, server
from asyncecho.protocol import uids
from asyncecho.protocol.pdu_items import AsynchronousOperationsWindow

REPO = Path(__file__).resolve().parent.parent
INIT = REPO / "src" / "asyncecho" / "__init__.py"
LOCALHOST = "127.0.0.1"

CLIENT_CALLS: dict[str, Callable[..., Any]] = {
    "echo": asyncecho.echo,
    "verify": asyncecho.verify,
    "associate": asyncecho.associate,
}


def _init_fields(cls: type[Any]) -> list[Field[Any]]:
    return [f for f in fields(cls) if f.init]


def _default(f: Field[Any]) -> Any:
    factory = f.default_factory
    return f.default if factory is MISSING else factory()


# --- mypy sees the options ----------------------------------------------------------------------

# Every line marked `# E` must be a mypy error, and no other line.
_SNIPPET = """
from __future__ import annotations

import ssl

import asyncecho
from asyncecho import EchoOptions, ServerOptions, Target


async def correct() -> None:
    ctx = ssl.create_default_context()
    await asyncecho.echo("127.0.0.1", 104, calling_ae="ME", acse_timeout=10, deadline=None)
    await asyncecho.echo("127.0.0.1", 104, options=EchoOptions(), ssl=ctx, max_pdu=0)
    await asyncecho.verify("127.0.0.1", 104, called_ae="PACS", network_timeout=2.5)
    async with asyncecho.associate("127.0.0.1", 104, dimse_timeout=2.5) as assoc:
        status: int = await assoc.echo()
    async with asyncecho.serve("127.0.0.1", 0, ae_title="SCP", acse_timeout=5) as server:
        port: int = server.port
    async with asyncecho.serve(options=ServerOptions(max_associations=3)) as server:
        pass
    targets = [Target("127.0.0.1", 104)]
    async with asyncecho.sweep(targets, concurrency=2, calling_ae="ME", deadline=None) as records:
        async for record in records:
            outcome: str = record.outcome
    asyncecho.sweep(targets, rate=5.0, acse_timeout=3, options=EchoOptions())
    asyncecho.identity.user_identity(username="alice")
    print(status, port, outcome, asyncecho.tls, asyncecho.protocol.uids.VERIFICATION)


async def misspelt() -> None:
    await asyncecho.echo("127.0.0.1", 104, calling_aet="X")  # E
    await asyncecho.verify("127.0.0.1", 104, calling_aet="X")  # E
    async with asyncecho.associate("127.0.0.1", 104, calling_aet="X"):  # E
        pass
    async with asyncecho.serve("127.0.0.1", 0, calling_aet="X"):  # E
        pass
    asyncecho.sweep([], calling_aet="X")  # E


async def mistyped() -> None:
    await asyncecho.echo("127.0.0.1", 104, acse_timeout="ten")  # E
    await asyncecho.verify("127.0.0.1", 104, acse_timeout="ten")  # E
    async with asyncecho.associate("127.0.0.1", 104, acse_timeout="ten"):  # E
        pass
    async with asyncecho.serve("127.0.0.1", 0, acse_timeout="ten"):  # E
        pass
    asyncecho.sweep([], acse_timeout="ten")  # E
    await asyncecho.echo("127.0.0.1", 104, max_pdu="16382")  # E
    async with asyncecho.serve(max_associations=None):  # E
        pass
    asyncecho.sweep([], concurrency="5")  # E
"""


def test_mypy_reports_misspelt_and_mistyped_options_and_accepts_correct_calls(
    tmp_path: Path,
) -> None:
    from mypy import api

    snippet = tmp_path / "typed_api_snippet.py"
    snippet.write_text(_SNIPPET)
    expected = {n for n, line in enumerate(_SNIPPET.splitlines(), 1) if line.endswith("# E")}
    stdout, stderr, _ = api.run(
        [
            "--config-file",
            str(REPO / "pyproject.toml"),
            "--cache-dir",
            str(tmp_path / "mypy_cache"),
            "--no-error-summary",
            "--hide-error-context",
            str(snippet),
        ]
    )
    errors: dict[int, list[str]] = {}
    for line in stdout.splitlines():
        where, _, message = line.partition(": error: ")
        if message:
            errors.setdefault(int(where.split(":")[1]), []).append(message)
    assert not stderr, stderr
    assert set(errors) == expected, stdout
    for number, messages in errors.items():
        text = _SNIPPET.splitlines()[number - 1]
        if "calling_aet" in text:
            assert any('keyword argument "calling_aet"' in m for m in messages), messages


# --- the signatures are the options -------------------------------------------------------------


@pytest.mark.parametrize("name", list(CLIENT_CALLS))
def test_client_calls_take_every_echo_option_as_a_typed_keyword(name: str) -> None:
    signature = inspect.signature(CLIENT_CALLS[name])
    params = signature.parameters
    assert list(params)[:2] == ["host", "port"]
    keywords = [p for p in params.values() if p.kind is p.KEYWORD_ONLY]
    assert all(p.kind is not p.VAR_KEYWORD for p in params.values())
    option_fields = _init_fields(EchoOptions)
    assert [p.name for p in keywords] == [f.name for f in option_fields] + ["options"]
    for f, p in zip(option_fields, keywords, strict=False):
        assert p.annotation == f.type, f.name  # the same type as EchoOptions'
        assert repr(p.default) == repr(_default(f)), f.name  # help() shows the real default
    assert params["options"].default is None


def test_serve_takes_every_server_option_as_a_typed_keyword() -> None:
    params = inspect.signature(asyncecho.serve).parameters
    assert params["host"].default == LOCALHOST and params["port"].default == 0
    keywords = [p for p in params.values() if p.kind is p.KEYWORD_ONLY]
    assert all(p.kind is not p.VAR_KEYWORD for p in params.values())
    option_fields = _init_fields(ServerOptions)
    assert [p.name for p in keywords] == [f.name for f in option_fields] + ["options"]
    # What ServerOptions normalises (any iterable in, a frozenset or a tuple
    # of networks kept) is typed as what serve() takes.
    wider = {
        "allowed_calling_aes": "Iterable[str]",
        "allowed_called_aes": "Iterable[str]",
        "allowed_networks": "Iterable[_AnyNetwork]",
    }
    for f, p in zip(option_fields, keywords, strict=False):
        assert p.annotation == wider.get(f.name, f.type), f.name
        assert repr(p.default) == repr(_default(f)), f.name


def test_sweep_takes_every_echo_option_as_a_typed_keyword() -> None:
    params = inspect.signature(asyncecho.sweep).parameters
    assert all(p.kind is not p.VAR_KEYWORD for p in params.values())
    keywords = [p.name for p in params.values() if p.kind is p.KEYWORD_ONLY]
    echo_fields = {f.name: f for f in _init_fields(EchoOptions)}
    assert set(keywords) == {*echo_fields, "concurrency", "rate", "options"}
    for name in echo_fields.keys() - {"deadline"}:
        assert params[name].annotation == echo_fields[name].type, name
        assert repr(params[name].default) == repr(_default(echo_fields[name])), name
    assert params["deadline"].annotation == "float | None"
    assert params["concurrency"].default == 256


@pytest.mark.parametrize(
    ("call", "option_fields"),
    [
        *((call, EchoOptions) for call in CLIENT_CALLS.values()),
        (asyncecho.serve, ServerOptions),
        (asyncecho.sweep, EchoOptions),
    ],
)
def test_help_names_every_option_and_its_default(
    call: Callable[..., Any], option_fields: type[Any]
) -> None:
    text = pydoc.plain(pydoc.render_doc(call))
    doc = inspect.getdoc(call) or ""
    for f in _init_fields(option_fields):
        assert f"{f.name}:" in text, f.name  # in the signature
        assert f"`{f.name}`" in doc or f"{f.name}:" in doc, f.name  # and explained
    assert "= 'ECHOSCU'" in text if option_fields is EchoOptions else "= 'ANY-SCP'" in text


# --- every option reaches the association -------------------------------------------------------


def _echo_samples() -> dict[str, Any]:
    """A valid value, other than the default, for every EchoOptions field."""
    return {
        "calling_ae": "ME",
        "called_ae": "PACS",
        "transfer_syntaxes": (uids.IMPLICIT_VR_LE,),
        "max_pdu": 0,
        "connect_timeout": 1.5,
        "acse_timeout": 2.5,
        "dimse_timeout": 3.5,
        "network_timeout": 4.5,
        "deadline": 5.5,
        "ssl": ssl.create_default_context(),
        "server_hostname": "pacs.example",
        "user_identity": identity.user_identity(username="alice"),
        "user_items": (AsynchronousOperationsWindow(1, 1),),
    }


class _Made(Exception):
    def __init__(self, options: Any) -> None:
        self.options = options


def _capture_association(monkeypatch: pytest.MonkeyPatch) -> None:
    def made(host: str, port: int, options: EchoOptions, **_: object) -> None:
        raise _Made(options)  # (not an EchoError: verify() lets it through)

    monkeypatch.setattr(client, "Association", made)


async def _options_of(name: str, **kwargs: Any) -> EchoOptions:
    with pytest.raises(_Made) as made:
        if name == "associate":
            asyncecho.associate(LOCALHOST, 104, **kwargs)
        else:
            await CLIENT_CALLS[name](LOCALHOST, 104, **kwargs)
    options = made.value.options
    assert isinstance(options, EchoOptions)
    return options


@pytest.mark.anyio
@pytest.mark.parametrize("name", list(CLIENT_CALLS))
async def test_every_keyword_reaches_the_association(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _capture_association(monkeypatch)
    samples = _echo_samples()
    assert set(samples) == {f.name for f in _init_fields(EchoOptions)}  # a sample for each
    for field_name, value in samples.items():
        options = await _options_of(name, **{field_name: value})
        assert getattr(options, field_name) == value, field_name
        others = {f.name: getattr(options, f.name) for f in fields(EchoOptions)}
        del others[field_name]
        assert others == {k: v for k, v in _defaults(EchoOptions).items() if k != field_name}
    everything = await _options_of(name, **samples)
    assert everything == EchoOptions(**samples)
    # Nothing given: the shared default options, not a new object per call.
    assert await _options_of(name) is asyncecho.options._DEFAULT_OPTIONS


@pytest.mark.anyio
@pytest.mark.parametrize("name", list(CLIENT_CALLS))
async def test_a_keyword_equal_to_the_default_still_overrides_options(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The documented rule (keywords apply on top of `options=`) holds even
    # when the keyword's value is the default's: "given" is not "differs".
    _capture_association(monkeypatch)
    samples = _echo_samples()
    base = EchoOptions(**samples)
    defaults = _defaults(EchoOptions)
    for field_name in samples:
        options = await _options_of(name, options=base, **{field_name: defaults[field_name]})
        assert getattr(options, field_name) == defaults[field_name], field_name
    assert await _options_of(name, options=base) is base


def _defaults(cls: type[Any]) -> dict[str, Any]:
    return {f.name: _default(f) for f in fields(cls) if f.init}


def test_every_serve_keyword_reaches_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    async def check(*args: Any) -> bool:
        return True

    samples: dict[str, Any] = {
        "ae_title": "SCP",
        "require_called_ae": True,
        "allowed_calling_aes": frozenset({"GOOD"}),
        "allowed_called_aes": frozenset({"SCP"}),
        "allowed_networks": ("127.0.0.0/8",),
        "transfer_syntaxes": (uids.IMPLICIT_VR_LE,),
        "max_pdu": 0,
        "max_associations": 0,
        "acse_timeout": 1.5,
        "dimse_timeout": 2.5,
        "network_timeout": 3.5,
        "ssl": ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER),
        "backlog": 7,
        "identity_check": check,
    }
    assert set(samples) == {f.name for f in _init_fields(ServerOptions)}
    monkeypatch.setattr(server, "_serving", lambda host, port, options: options)

    def served(**settings: Any) -> Any:
        return server.serve(**settings)  # (the options, with _serving patched)

    for name, value in samples.items():
        options = served(**{name: value})
        assert isinstance(options, ServerOptions)
        assert getattr(options, name) == getattr(ServerOptions(**{name: value}), name), name
        assert getattr(options, name) != _defaults(ServerOptions)[name], name
        # Any setting beside options= is refused, even one equal to the default.
        with pytest.raises(TypeError, match=name):
            served(options=ServerOptions(), **{name: _defaults(ServerOptions)[name]})
    assert served(**samples) == ServerOptions(**samples)
    given = ServerOptions(ae_title="OTHER")
    assert served(options=given) is given


def test_every_sweep_keyword_reaches_the_targets_options() -> None:
    samples = _echo_samples()
    for name, value in samples.items():
        assert getattr(asyncecho.sweep([], **{name: value}).options, name) == value, name
    assert asyncecho.sweep([], **samples).options == EchoOptions(**samples)
    base = EchoOptions(calling_ae="ME")
    assert asyncecho.sweep([], options=base, calling_ae="ECHOSCU").options.calling_ae == "ECHOSCU"
    assert asyncecho.sweep([]).options == EchoOptions(deadline=10)


# --- the package's namespace --------------------------------------------------------------------


def test_dir_lists_the_public_api_and_nothing_else() -> None:
    listed = dir(asyncecho)
    assert listed == sorted(asyncecho.__all__)
    for name in ("echo", "verify", "associate", "serve", "sweep", "EchoOptions", "tls"):
        assert name in listed
    for helper in ("Any", "TYPE_CHECKING", "annotations", "import_module"):
        assert helper not in listed
    for name in asyncecho.__all__:
        assert getattr(asyncecho, name) is not None, name


def _type_checking_imports() -> dict[str, str]:
    """{name: module} of the `if TYPE_CHECKING:` block of __init__.py."""
    tree = ast.parse(INIT.read_text())
    (block,) = (
        node
        for node in tree.body
        if isinstance(node, ast.If)
        and isinstance(node.test, ast.Name)
        and node.test.id == "TYPE_CHECKING"
    )
    names: dict[str, str] = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom) and node.level == 1, ast.dump(node)
        for alias in node.names:
            # `x as x`: an explicit re-export for mypy --strict
            assert alias.asname == alias.name, alias.name
            module = node.module or alias.name
            if asyncecho._EXPORTS.get(alias.name) == f"{node.module}.{alias.name}":
                module = f"{node.module}.{alias.name}"  # a submodule: `from .protocol import uids`
            names[alias.name] = module
    return names


def test_one_export_list() -> None:
    # __all__ is made from the lazy map; the TYPE_CHECKING imports (for type
    # checkers, which cannot see the lazy map) must name the same things.
    exports = dict(asyncecho._EXPORTS)
    static = _type_checking_imports()
    assert static.pop("__version__") == "_version"
    assert static == exports
    assert sorted(asyncecho.__all__) == sorted([*exports, "__version__"])
    assert len(asyncecho.__all__) == len(set(asyncecho.__all__))


def test_import_asyncecho_loads_no_submodule_but_the_version() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import sys, asyncecho
                dir(asyncecho)
                print(sorted(m for m in sys.modules if m.startswith("asyncecho")))
                print(sorted(m for m in sys.modules if m.split(".")[0] in ("pydicom", "structlog", "anyio")))
                asyncecho.identity.user_identity(username="a")
                import asyncecho.tls
                print(asyncecho.tls.client_context is not None)
                """
            ),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["['asyncecho', 'asyncecho._version']", "[]", "True"]


# --- what is not public -------------------------------------------------------------------------


def test_association_keeps_its_upper_layer_and_channel_private() -> None:
    assoc = client.Association(LOCALHOST, 104, EchoOptions())
    for name in ("upper", "channel"):
        assert not hasattr(assoc, name), name
    public = {name for name in dir(assoc) if not name.startswith("_")}
    assert {"echo", "release", "abort", "host", "port", "options"} <= public
