"""The documentation site builds, documents the whole public API, and every
guide runs as written.

`sphinx-build -W` (warnings are errors) builds `docs/` into a temp folder,
offline. Every guide (`docs/guides/*.rst`) is run here, block by block, in
the order it shows them, in one temp folder per guide:

- a `python` block is a whole program: it is run and must exit 0 (the
  guides put their claims in `assert`s);
- a `console` block is a shell session: each `$ ` line is run with bash
  (`asyncecho` on PATH); the lines under it are the output it must print,
  in order, `...` standing for any text. `$ echo $?` prints the previous
  command's exit status. A command ending in `&` keeps running in the
  background (an SCP, the exporter) until the guide ends; the test waits
  for the ports it names to listen, and the lines under it are looked for
  in its output at the end. `$ kill %N` stops the Nth of them with SIGTERM
  and shows what it printed (as an interactive shell would); `$ echo $?`
  after it is 0 if the job exited 0. `$ export NAME=value` sets the
  environment of the commands after it;
- a block with a file name as its `:caption:` (any language) is also
  written to that file, for the commands after it to use.

The guides use the ports a reader knows (11112 for an SCP, 2762 for TLS,
9704 for the exporter) and a few more (11113 for a port where nothing
listens, 11114 and 11115 for a second and third peer): each is replaced by
a free loopback port, the same one throughout the guide.
"""

from __future__ import annotations

import inspect
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import asyncecho
from peers import free_port, wait_listening

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
GUIDES = sorted((DOCS / "guides").glob("*.rst"))
RUN_TIMEOUT = 60
#: The ports the guides name, each replaced by a free one per guide.
GUIDE_PORTS = (11112, 11113, 11114, 11115, 2762, 9704)
#: What a code block may be: run (python, console) or shown (the others).
LANGUAGES = {"python", "console", "text", "yaml", "ini", "json", "markdown"}


# --- reading the guides ------------------------------------------------------------


@dataclass
class Block:
    language: str
    text: str
    line: int
    caption: str = ""


_DIRECTIVE = re.compile(r"^(?P<indent>[ ]*)\.\. code-block::[ ]*(?P<language>\S*)[ ]*$")
_OPTION = re.compile(r"^[ ]+:(?P<name>[\w-]+):[ ]*(?P<value>.*)$")


def code_blocks(text: str) -> list[Block]:
    """The `.. code-block::` directives of a reST file, in order."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = _DIRECTIVE.match(lines[i])
        if match is None:
            i += 1
            continue
        indent = len(match["indent"])
        start = i + 1
        caption = ""
        i += 1
        while i < len(lines) and (option := _OPTION.match(lines[i])):
            if option["name"] == "caption":
                caption = option["value"].strip()
            i += 1
        body: list[str] = []
        while i < len(lines) and (
            not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent
        ):
            body.append(lines[i])
            i += 1
        content = body
        while content and not content[-1].strip():
            content.pop()
        while content and not content[0].strip():
            content.pop(0)
        margin = min(len(line) - len(line.lstrip()) for line in content if line.strip())
        dedented = "\n".join(line[margin:] for line in content) + "\n"
        blocks.append(Block(match["language"], dedented, start, caption))
    return blocks


@dataclass
class Command:
    line: str
    expected: list[str] = field(default_factory=list)


def console_commands(text: str) -> list[Command]:
    """`$ ` lines (a trailing backslash joins the next) and the output lines
    under each."""
    commands: list[Command] = []
    continued = False
    for raw in text.splitlines():
        if continued:
            commands[-1].line = commands[-1].line[:-1].rstrip() + " " + raw.strip()
        elif raw.startswith("$ "):
            commands.append(Command(raw[2:].strip()))
        elif raw.strip():
            assert commands, f"output before any command: {raw!r}"
            commands[-1].expected.append(raw.rstrip())
        continued = bool(commands) and commands[-1].line.endswith("\\")
    return commands


def output_matches(expected: list[str], output: str) -> bool:
    """Each expected line matches a whole line of `output`, in order;
    `...` in it stands for any text."""
    actual = [line.rstrip() for line in output.splitlines()]
    position = 0
    for wanted in expected:
        pattern = re.compile(re.escape(wanted).replace(re.escape("..."), ".*"))
        while position < len(actual) and not pattern.fullmatch(actual[position]):
            position += 1
        if position == len(actual):
            return False
        position += 1
    return True


# --- running them ------------------------------------------------------------------


@dataclass
class Background:
    command: Command
    process: subprocess.Popen[bytes]
    log: Path


class GuideRun:
    """One guide's folder, ports, environment and background processes."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.ports = {port: free_port() for port in GUIDE_PORTS}
        self.env = dict(os.environ)
        bin_dir = str(Path(sys.executable).parent)
        self.env["PATH"] = bin_dir + os.pathsep + self.env.get("PATH", "")
        self.env.pop("ASYNCECHO_PASSCODE", None)
        self.background: list[Background] = []
        self.status = 0

    def localise(self, text: str) -> str:
        for port, free in self.ports.items():
            text = re.sub(rf"\b{port}\b", str(free), text)
        return text

    def run_block(self, block: Block, where: str) -> None:
        text = self.localise(block.text)
        if block.caption and re.fullmatch(r"[\w.-]+\.\w+", block.caption):
            (self.folder / block.caption).write_text(text)
        if block.language == "python":
            self.run_python(text, where)
        elif block.language == "console":
            for command in console_commands(text):
                self.run_command(command, where)

    def run_python(self, text: str, where: str) -> None:
        script = self.folder / "_guide_block.py"
        script.write_text(text)
        done = subprocess.run(
            [sys.executable, str(script)],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
        )
        assert done.returncode == 0, f"{where}: exit {done.returncode}\n{done.stdout}{done.stderr}"
        assert "Traceback" not in done.stderr, f"{where}:\n{done.stderr}"

    def run_command(self, command: Command, where: str) -> None:
        line = command.line
        if line == "echo $?":
            output = f"{self.status}\n"
        elif line.startswith("export "):
            name, _, value = line[len("export ") :].partition("=")
            self.env[name] = value
            return
        elif line.endswith("&"):
            self.start(command, where)
            return
        elif re.fullmatch(r"kill %\d+", line):
            # As in an interactive shell: the job's lines show on the terminal.
            job = self.background[int(line[len("kill %") :]) - 1]
            self.status = self.stop(job)
            output = job.log.read_text()
        else:
            done = subprocess.run(
                ["bash", "-c", line],
                cwd=self.folder,
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=RUN_TIMEOUT,
            )
            self.status = done.returncode
            output = done.stdout
            assert "Traceback" not in output, f"{where}: $ {line}\n{output}"
        assert output_matches(command.expected, output), (
            f"{where}: $ {line}\nexpected (in order):\n"
            + "\n".join(command.expected)
            + f"\ngot (exit {self.status}):\n{output}"
        )

    def start(self, command: Command, where: str) -> None:
        log = self.folder / f"_background_{len(self.background)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                ["bash", "-c", f"exec {command.line[:-1].strip()}"],
                cwd=self.folder,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.background.append(Background(command, process, log))
        for port in self.ports.values():
            if re.search(rf"\b{port}\b", command.line):
                try:
                    wait_listening(port, None, timeout=15)
                except RuntimeError:
                    raise AssertionError(
                        f"{where}: $ {command.line}: port {port} never listened\n{log.read_text()}"
                    ) from None

    @staticmethod
    def stop(job: Background) -> int:
        """SIGTERM (SIGKILL after 10 s); 0 if the job exited 0 (kill's own
        status), 1 otherwise."""
        if job.process.poll() is None:
            os.killpg(job.process.pid, signal.SIGTERM)
        try:
            code = job.process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(job.process.pid, signal.SIGKILL)
            code = job.process.wait(5)
        return 0 if code == 0 else 1

    def finish(self) -> None:
        """Stop the background commands (SIGTERM), check what they printed."""
        failures: list[str] = []
        for job in self.background:
            self.stop(job)
            output = job.log.read_text()
            if "Traceback" in output or not output_matches(job.command.expected, output):
                failures.append(f"$ {job.command.line}\n{output}")
        assert not failures, "background commands:\n" + "\n".join(failures)


def run_guide(path: Path, folder: Path) -> None:
    run = GuideRun(folder)
    try:
        for block in code_blocks(path.read_text()):
            run.run_block(block, f"{path.name}:{block.line}")
    finally:
        run.finish()


# --- the tests ---------------------------------------------------------------------


def test_there_are_guides_and_each_has_code_that_runs() -> None:
    assert len(GUIDES) >= 6
    for guide in GUIDES:
        languages = {block.language for block in code_blocks(guide.read_text())}
        assert languages & {"python", "console"}, f"{guide.name} runs nothing"


@pytest.mark.parametrize("path", sorted(DOCS.rglob("*.rst")), ids=lambda p: p.name)
def test_every_code_block_names_a_known_language(path: Path) -> None:
    for block in code_blocks(path.read_text()):
        assert block.language in LANGUAGES, f"{path.name}:{block.line}: {block.language!r}"


@pytest.mark.parametrize("path", GUIDES, ids=lambda p: p.stem)
def test_guide_runs_as_written(path: Path, tmp_path: Path) -> None:
    run_guide(path, tmp_path)


def test_sphinx_builds_the_site_offline_with_warnings_as_errors(tmp_path: Path) -> None:
    out = tmp_path / "html"
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         str(DOCS), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    api = (out / "api.html").read_text()
    for name in _public_names():
        assert f'id="asyncecho.{name}"' in api, f"{name} is not in the API reference"
    for guide in GUIDES:
        assert (out / "guides" / f"{guide.stem}.html").is_file()
    # Offline: no asset is fetched from elsewhere when a page is shown.
    for page in out.rglob("*.html"):
        assert not re.search(r'<(script|link)[^>]+(src|href)="(https?:)?//', page.read_text()), page


def _public_names() -> list[str]:
    """The classes and functions of `asyncecho.__all__` (the modules
    `tls`, `identity`, `uids` are checked by their members)."""
    names = []
    for name in asyncecho.__all__:
        value: Any = getattr(asyncecho, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            names.append(name)
    return names


def test_the_api_reference_names_every_public_name() -> None:
    text = (DOCS / "api.rst").read_text()
    directives = set(re.findall(r"^\.\. auto\w+:: (\S+)", text, re.MULTILINE))
    for name in asyncecho.__all__:
        if name == "__version__":
            assert "__version__" in text
            continue
        value: Any = getattr(asyncecho, name)
        module = getattr(value, "__name__", "") if inspect.ismodule(value) else ""
        assert name in directives or module in directives, f"{name} is not documented"


_TABLE_ROW = re.compile(r"^   \* - `(?P<name>\w+)`\n     - ``(?P<outcome>[\w-]+)``", re.MULTILINE)


def test_the_exception_table_gives_each_exception_its_outcome() -> None:
    rows = dict(
        (m["name"], m["outcome"]) for m in _TABLE_ROW.finditer((DOCS / "api.rst").read_text())
    )
    abstract = {"EchoError", "ConnectionFailed", "EchoTimeout"}
    exported = {
        name
        for name in asyncecho.__all__
        if inspect.isclass(getattr(asyncecho, name))
        and issubclass(getattr(asyncecho, name), asyncecho.EchoError)
    }
    assert set(rows) == exported - abstract
    for name, outcome in rows.items():
        assert getattr(asyncecho, name).outcome == outcome, name


@pytest.mark.parametrize("name", ["echo", "verify", "associate", "sweep", "serve"])
def test_every_option_has_its_meaning_and_default_in_the_docstring(name: str) -> None:
    function = getattr(asyncecho, name)
    doc = inspect.getdoc(function) or ""
    args = doc.split("Args:", 1)[1].split("Raises:", 1)[0].split("Returns:", 1)[0]
    entries = dict(
        (m[1], m[2]) for m in re.finditer(r"^    (\w+): (.*(?:\n      .*)*)", args, re.MULTILINE)
    )
    for parameter in inspect.signature(function).parameters.values():
        assert parameter.name in entries, f"{name}(): {parameter.name} has no entry"
        if parameter.default is not inspect.Parameter.empty:
            assert "default" in entries[parameter.name].lower(), (
                f"{name}(): {parameter.name} does not give its default"
            )


# --- the runner's own rules --------------------------------------------------------


def test_output_lines_match_in_order_with_ellipses() -> None:
    output = "I: Requesting Association\nI: Association Accepted\nI: took 1.2 ms\n"
    assert output_matches(["I: Requesting ...", "I: took ... ms"], output)
    assert not output_matches(["I: Association Accepted", "I: Requesting Association"], output)
    assert not output_matches(["E: ..."], output)


def test_console_blocks_split_into_commands_and_their_output() -> None:
    commands = console_commands("$ a \\\n  --b\nline 1\n\n$ echo $?\n0\n")
    assert [(c.line, c.expected) for c in commands] == [
        ("a --b", ["line 1"]),
        ("echo $?", ["0"]),
    ]


def test_code_blocks_are_read_with_their_caption_and_language() -> None:
    text = "Intro\n\n.. code-block:: text\n   :caption: nodes.txt\n\n   a\n     b\n\nafter\n"
    [block] = code_blocks(text)
    assert (block.language, block.caption, block.text) == ("text", "nodes.txt", "a\n  b\n")


def test_a_failing_guide_fails(tmp_path: Path) -> None:
    guide = tmp_path / "bad.rst"
    guide.write_text(
        "Bad\n===\n\n.. code-block:: console\n\n   $ asyncecho echoscu 127.0.0.1 11113\n"
        "   I: Association Accepted\n"
    )
    with pytest.raises(AssertionError, match="expected"):
        run_guide(guide, tmp_path)


def test_the_uids_the_reference_gives_are_the_libraries() -> None:
    from asyncecho.protocol import uids

    text = (DOCS / "api.rst").read_text()
    values = re.findall(r'^\.\. py:data:: (\w+)\n   :value: "([^"]+)"', text, re.MULTILINE)
    assert len(values) == 6
    for name, value in values:
        assert getattr(uids, name) == value, name
    order = re.search(
        r"^\.\. py:data:: DEFAULT_TRANSFER_SYNTAXES\n   :value: \((.*)\)$", text, re.M
    )
    assert order is not None
    names = [name.strip() for name in order[1].split(",")]
    assert tuple(getattr(uids, name) for name in names) == uids.DEFAULT_TRANSFER_SYNTAXES


def test_every_file_the_design_notes_name_exists() -> None:
    """The notes name modules by path: a file moved or renamed fails here."""
    package = ROOT / "src" / "asyncecho"
    places = [ROOT, ROOT / "benchmarks", package, *package.iterdir()]
    for page in (DOCS / "design").glob("*.rst"):
        for name in re.findall(r"``([\w/]+\.(?:py|md|toml))``", page.read_text()):
            assert any((place / name).is_file() for place in places if place.is_dir()), (
                f"{page.name}: {name}"
            )
