"""The sweep report: records in, one self-contained HTML page out
(`asyncecho report`, `asyncecho sweep --report`).

- `aggregate`: what the page says, worked out from the records (counts,
  latency, phases, failed targets by outcome, the implementation inventory,
  the table's data); plain data, no HTML;
- `charts`: the latency histogram and per-phase timings as geometry for
  hand-built SVG;
- `render`: the Jinja2 template (autoescape on) with the stylesheet and
  script inlined, and the file written whole.

`render_html(rows)` takes `SweepRecord.as_dict()` rows, one per target.
Beside `sweeps` (whose records and summary it reuses); nothing of the CLI.
Needs the `report` extra (`pip install "asyncecho[report]"`: Jinja2).
"""

from asyncecho.report.aggregate import Report, aggregate
from asyncecho.report.render import missing, render_html, render_report, write_html

__all__ = ["Report", "aggregate", "missing", "render_html", "render_report", "write_html"]
