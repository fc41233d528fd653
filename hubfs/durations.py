"""Durations as the command line writes them: ``90``, ``90s``, ``15m``, ``12h``, ``30d``, ``2w`` (``1.5h`` too).

One parser for every option that takes a time (``hubfs serve --gc-interval``, ``hubfs token create
--expires-in``, ``hubfs jobs run --timeout``, ...), so they all accept the same spellings.
"""

from __future__ import annotations

import math

from hubfs.errors import BadRequestError

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
EXAMPLES = "3600, 90s, 15m, 12h, 30d or 2w"


def parse_duration(text: str) -> float:
    """Seconds (finite, >= 0) from ``text``; BadRequestError (a ValueError) naming the accepted forms."""
    value, unit = text.strip().lower(), 1
    if value[-1:] in UNITS:
        value, unit = value[:-1], UNITS[value[-1]]
    try:
        seconds = float(value) * unit
    except ValueError:
        seconds = math.nan
    if not 0 <= seconds < math.inf:
        raise BadRequestError(f"invalid duration {text!r}: use e.g. {EXAMPLES}")
    return seconds
