"""Numbers printed the way Go's `%g` prints them, so generated rules read exactly like Sloth's.

Go and Python agree on the shortest digits that round-trip (`0.0009999999999999432`), but Go prints whole numbers
without `.0` and switches to an exponent from 1e+06 up, where Python waits until 1e16.
"""

from __future__ import annotations

import math
from decimal import Decimal


def go_float(value: float) -> str:
    if not math.isfinite(value):
        raise ValueError(f"{value} has no PromQL literal in generated rules")
    if value == 0:
        return "0"
    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exponent, int)  # finite, checked above
    mantissa = "".join(map(str, digits))
    point = len(mantissa) + exponent  # digits before the decimal point
    scientific = point - 1
    prefix = "-" if sign else ""
    if scientific < -4 or scientific >= 6:
        head, tail = mantissa[0], mantissa[1:]
        return f"{prefix}{head}{'.' + tail if tail else ''}e{'-' if scientific < 0 else '+'}{abs(scientific):02d}"
    if point <= 0:
        return f"{prefix}0.{'0' * -point}{mantissa}"
    if point >= len(mantissa):
        return f"{prefix}{mantissa}{'0' * (point - len(mantissa))}"
    return f"{prefix}{mantissa[:point]}.{mantissa[point:]}"
