"""Records to one self-contained HTML file: the aggregation (`aggregate`),
the charts (`charts`) and the table's data through a Jinja2 template with
autoescape on, the stylesheet and script inlined.

Nothing in the page asks any other host for anything: no URL in it loads a
resource, and its Content-Security-Policy (`default-src 'none'`, the inline
script and stylesheet allowed by their SHA-256 only) makes the browser
refuse any that a hostile record might smuggle in. Every value from a record
goes through autoescaping (HTML) or Jinja2's `tojson` (the table's data,
with <, >, & and ' escaped), and the script puts values in the page as text,
never as markup.

Needs Jinja2 (`pip install "asyncecho[report]"`), imported when a report is
rendered; `missing()` says so beforehand.

May import: the other `report` modules, `asyncecho._version`, Jinja2 and
the standard library.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from asyncecho._version import __version__
from asyncecho.report import charts
from asyncecho.report.aggregate import Report, aggregate

if TYPE_CHECKING:
    import jinja2

TEMPLATE = "report.html.j2"


def missing() -> str | None:
    """Why a report cannot be rendered here (Jinja2 is not installed), or None."""
    try:
        import jinja2  # noqa: F401
    except ImportError:
        return 'the report needs Jinja2: pip install "asyncecho[report]"'
    return None


def _asset(name: str) -> str:
    return resources.files("asyncecho.report").joinpath("templates").joinpath(name).read_text("utf-8")


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode()


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("asyncecho.report", "templates"),
        autoescape=True,  # every template, whatever its name
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # compact JSON for the table's data (tojson still escapes <, >, & and ')
    env.policies["json.dumps_kwargs"] = {"separators": (",", ":"), "sort_keys": False}
    return env


def render_report(
    report: Report,
    *,
    title: str = "asyncecho sweep report",
    sources: Sequence[str] = (),
    generated: datetime | None = None,
) -> str:
    """The HTML page for an aggregated report."""
    from markupsafe import Markup

    script, style = _asset("report.js"), _asset("report.css")
    if "</" in script or "</" in style:  # would end the element early
        raise ValueError("an inline asset holds '</'")
    policy = (
        "default-src 'none'; "
        f"script-src '{_sha256(script)}'; "
        f"style-src '{_sha256(style)}'; "
        "img-src 'none'; base-uri 'none'; form-action 'none'"
    )
    moment = (generated or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return (
        _environment()
        .get_template(TEMPLATE)
        .render(
            r=report,
            title=title,
            sources=list(sources),
            generated=moment.isoformat(timespec="seconds").replace("+00:00", "Z"),
            version=__version__,
            histogram=charts.histogram(report.histogram),
            phases=charts.phases(report.phases),
            ms=charts.ms_text,
            policy=policy,
            # our own files, checked above: inlined as they are
            script=Markup(script),
            style=Markup(style),
        )
    )


def render_html(
    rows: Iterable[Mapping[str, Any]],
    *,
    title: str = "asyncecho sweep report",
    sources: Sequence[str] = (),
    generated: datetime | None = None,
) -> str:
    """The report page for records (`SweepRecord.as_dict()` rows, one per
    target)."""
    return render_report(aggregate(rows), title=title, sources=sources, generated=generated)


def write_html(path: str, html: str) -> int:
    """Write the page through a temporary file in the same directory and
    os.replace() (a crash never leaves half a report); its size in bytes.
    Raises OSError."""
    data = html.encode("utf-8")
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(
        prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory
    )
    try:
        with open(fd, "wb") as stream:
            stream.write(data)
        umask = os.umask(0o022)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # as open() would have made it
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    return len(data)
