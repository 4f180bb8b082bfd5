"""Threshold ranges and performance data in the Monitoring Plugins format
(the Monitoring Plugins Development Guidelines, "Threshold and ranges" and
"Performance data"), for `asyncecho check`.

A range is `[@]start:end`: `start` may be left out when it is 0 (`10` is
`0:10`), `end` when it is infinity (`10:`), `~` is minus infinity (`~:10`).
A value alerts when it lies outside start..end, endpoints inclusive of the
range, or, with a leading `@`, when it lies inside it:

    10      alert if < 0 or > 10
    10:     alert if < 10
    ~:10    alert if > 10
    10:20   alert if < 10 or > 20
    @10:20  alert if >= 10 and <= 20

Numbers are plain decimals (`[-0-9.]`, as performance data requires), so a
range can go into the perfdata's warn and crit fields as it was written.

May import: the standard library only (this is on the check's start-up path).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_NUMBER = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)")


class RangeError(ValueError):
    """A threshold that is not in the range format."""


def _number(text: str, whole: str) -> float:
    if not _NUMBER.fullmatch(text):
        raise RangeError(
            f"invalid threshold range {whole!r}: {text!r} is not a plain decimal number"
        )
    return float(text)


@dataclass(frozen=True, slots=True)
class Range:
    """One threshold range; `text` is what it was parsed from."""

    text: str
    start: float
    end: float
    inside: bool  # the leading `@`: alert inside start..end rather than outside

    @classmethod
    def parse(cls, text: str) -> Range:
        body = text
        inside = body.startswith("@")
        if inside:
            body = body[1:]
        if not body:
            raise RangeError(f"invalid threshold range {text!r}: empty")
        if ":" in body:
            low, _, high = body.partition(":")
            if low == "~":
                start = -math.inf
            elif low == "":
                start = 0.0
            else:
                start = _number(low, text)
            end = math.inf if high == "" else _number(high, text)
        else:
            start, end = 0.0, _number(body, text)
        if start > end:
            raise RangeError(f"invalid threshold range {text!r}: start is greater than end")
        return cls(text, start, end, inside)

    def alerts(self, value: float) -> bool:
        """Whether `value` raises this threshold's alert."""
        within = self.start <= value <= self.end
        return within if self.inside else not within

    def describe(self, name: str) -> str:
        """Where an alerting value lies, in words: `outside the warning range
        10`, `inside the critical range @10:20`."""
        return f"{'inside' if self.inside else 'outside'} the {name} range {self.text}"


def perfdata_label(label: str) -> str:
    """A label quoted only where the format needs it (a space, `=` or `'`
    in it), a quote in it doubled."""
    if any(char in label for char in " ='"):
        return "'" + label.replace("'", "''") + "'"
    return label


def perfdata_seconds(
    label: str,
    seconds: float,
    *,
    warn: Range | None = None,
    crit: Range | None = None,
    minimum: float | None = 0.0,
) -> str:
    """`label=value s;warn;crit;min`: seconds as a plain decimal (never an
    exponent), trailing empty fields dropped."""
    fields = [
        f"{seconds:.6f}s",
        warn.text if warn else "",
        crit.text if crit else "",
        "" if minimum is None else _plain(minimum),
    ]
    while fields[-1] == "":
        fields.pop()
    return f"{perfdata_label(label)}={';'.join(fields)}"


def _plain(number: float) -> str:
    text = f"{number:.6f}".rstrip("0").rstrip(".")
    return text or "0"
