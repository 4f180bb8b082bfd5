"""Release readiness: the version in one place, the changelog, and the
artefacts a release uploads.

`python -m build` makes exactly one sdist and one wheel (the wheel built
from the sdist, so the sdist is known to be complete), `twine check
--strict` passes on both, both carry the MIT LICENSE, and the wheel
installed into a fresh virtual environment runs `asyncecho --version` and
an echo against its own loopback SCP (`asyncecho demo`). The build fetches
setuptools and the install the runtime dependencies from the package index
(or pip's cache): the test fails, rather than skips, where neither is
reachable, as a release would.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

from asyncecho._version import __version__

ROOT = Path(__file__).resolve().parent.parent
RUN_TIMEOUT = 300


def _run(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "build", "--outdir", out, ROOT)
    return out


def test_the_version_is_kept_in_one_place() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    project = pyproject.split("\n[project]\n", 1)[1].split("\n[", 1)[0]
    assert 'dynamic = ["version"]' in project
    assert not re.search(r"^version\s*=", project, re.MULTILINE)
    assert 'version = { attr = "asyncecho._version.__version__" }' in pyproject
    assert re.fullmatch(r"\d+\.\d+\.\d+(?:(?:a|b|rc)\d+)?", __version__)
    others = [
        path
        for path in (ROOT / "src").rglob("*.py")
        if path.name != "_version.py"
        and re.search(r"['\"]" + re.escape(__version__) + r"['\"]", path.read_text())
    ]
    assert not others, f"the version is written out in {others}"


def test_asyncecho_version_prints_it() -> None:
    done = _run(sys.executable, "-m", "asyncecho", "--version")
    assert done.stdout.strip() == f"asyncecho {__version__}"


def test_the_changelog_keeps_a_changelog_and_names_the_current_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    assert text.startswith("# Changelog\n")
    versions = re.findall(r"^## \[([^\]]+)\]", text, re.MULTILINE)
    assert versions[:2] == ["Unreleased", __version__], versions
    section = text.split(f"## [{__version__}]", 1)[1].split("\n## ", 1)[0]
    assert re.search(
        r"^### (Added|Changed|Deprecated|Removed|Fixed|Security)$", section, re.MULTILINE
    )


def test_build_makes_one_sdist_and_one_wheel_that_twine_accepts(dist: Path) -> None:
    assert sorted(p.name for p in dist.iterdir()) == [
        f"asyncecho-{__version__}-py3-none-any.whl",
        f"asyncecho-{__version__}.tar.gz",
    ]
    _run(sys.executable, "-m", "twine", "check", "--strict", *sorted(dist.iterdir()))


def test_the_artefacts_carry_the_license_and_the_package_data(dist: Path) -> None:
    license_text = (ROOT / "LICENSE").read_text()
    assert license_text.startswith("MIT License")
    with tarfile.open(dist / f"asyncecho-{__version__}.tar.gz") as sdist:
        top = f"asyncecho-{__version__}"
        member = sdist.extractfile(f"{top}/LICENSE")
        assert member is not None and member.read().decode() == license_text
        names = set(sdist.getnames())
        assert f"{top}/README.md" in names and f"{top}/pyproject.toml" in names
    with zipfile.ZipFile(dist / f"asyncecho-{__version__}-py3-none-any.whl") as wheel:
        info = f"asyncecho-{__version__}.dist-info"
        assert wheel.read(f"{info}/licenses/LICENSE").decode() == license_text
        metadata = wheel.read(f"{info}/METADATA").decode()
        assert "License-Expression: MIT" in metadata
        assert f"Version: {__version__}" in metadata
        names = set(wheel.namelist())
    # Every file of the package in the tree is in the wheel (py.typed and
    # the report's templates included), and no test or cache.
    package = ROOT / "src" / "asyncecho"
    wanted = {
        "asyncecho/" + path.relative_to(package).as_posix()
        for path in package.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert wanted - names == set()
    assert not [name for name in names if "__pycache__" in name or name.startswith("tests/")]


def test_the_wheel_installed_in_a_fresh_venv_runs_an_echo(dist: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    wheel = dist / f"asyncecho-{__version__}-py3-none-any.whl"
    _run(
        bin_dir / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check", wheel
    )
    # From a folder away from the checkout, so that only the installed copy
    # can be imported.
    where = _run(
        bin_dir / "python", "-c", "import asyncecho; print(asyncecho.__file__)", cwd=tmp_path
    )
    assert Path(where.stdout.strip()).is_relative_to(env_dir)
    version = _run(bin_dir / "asyncecho", "--version", cwd=tmp_path)
    assert version.stdout.strip() == f"asyncecho {__version__}"
    demo = _run(bin_dir / "asyncecho", "demo", "--count", "20", cwd=tmp_path)
    assert "I: Received Echo Response (Status: Success)" in demo.stdout + demo.stderr
    assert "20/20 succeeded, 0 failed" in demo.stdout
