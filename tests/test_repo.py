"""The repository's own promises: .ci/run runs the README's test command."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Set-up on a fresh machine", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section)


def test_readme_gives_exactly_two_setup_commands() -> None:
    commands = _readme_commands()
    assert len(commands) == 2
    assert "asyncecho demo" in commands[0]
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert _readme_commands()[1] in ci
    assert "set -euo pipefail" in ci
    assert any("apt-get install -y dcmtk orthanc" in line for line in ci)
    assert any("ASYNCECHO_REQUIRE_PEERS=1" in line for line in ci)


def test_readme_setup_commands_need_only_python3_and_make_a_venv() -> None:
    # Debian and Ubuntu have no `python`, and their pip refuses to install
    # outside a virtual environment (PEP 668).
    for command in _readme_commands():
        assert command.startswith("python3 -m venv .venv && . .venv/bin/activate && ")


def test_the_package_ships_its_mit_license() -> None:
    import importlib.metadata

    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'license = "MIT"\n' in pyproject and 'license-files = ["LICENSE"]\n' in pyproject
    metadata = importlib.metadata.metadata("asyncecho")
    assert "LICENSE" in (metadata.get_all("License-File") or [])
