"""Input checks shared by the meta-analysis functions (private)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]

#: metafor (rma.uni, rma.mv) warns when max(vi) / min(vi) reaches this ratio: beyond it the
#: weights span more than the digits the fit can resolve reliably.
VARIANCE_RATIO_LIMIT = 1e7


class MetaInputError(ValueError):
    """Input that a meta-analysis cannot use; the message names the row and the rule."""


class MetaWarning(UserWarning):
    """A fit that runs but whose result needs care (where metafor warns, so do we)."""


def warn(message: str, depth: int = 1) -> None:
    """Issue a :class:`MetaWarning` pointing at the user's call (``depth`` frames above
    the function that warns), not at this module."""
    warnings.warn(message, MetaWarning, stacklevel=2 + depth)


def row_label(i: int, slab: Sequence[str] | None) -> str:
    """Human name of 0-based row ``i``: ``row 3 (study 'Bruce et al.')``."""
    name = f"row {i + 1}"
    if slab is not None and i < len(slab) and str(slab[i]) != str(i + 1):
        name += f" (study {slab[i]!r})"
    return name


def bad_rows(
    bad: NDArray[np.bool_], slab: Sequence[str] | None, values: Sequence[object] | None = None
) -> str:
    """Every flagged row, named as :func:`row_label` does (with its value when given), the
    first ten in full: ``row 2 (study 'B') = -1, row 5 = 0``.

    >>> bad_rows(np.array([False, True, True]), None, [0.1, -1, 0])
    'row 2 = -1, row 3 = 0'
    """
    rows = np.flatnonzero(bad)
    named = [
        row_label(int(i), slab) + ("" if values is None else f" = {values[int(i)]!r}")
        for i in rows[:10]
    ]
    more = f" and {rows.size - 10} more" if rows.size > 10 else ""
    return ", ".join(named) + more


def as_vector(x: ArrayLike, name: str, slab: Sequence[str] | None = None) -> FloatArray:
    """A 1-D float vector; missing or non-finite values raise, naming the row."""
    try:
        a = np.asarray(x, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise MetaInputError(f"{name}: values must be numeric ({exc})") from None
    bad = ~np.isfinite(a)
    if bad.any():
        raise MetaInputError(f"{name}: missing or not finite in {bad_rows(bad, slab)}")
    return a


def check_positive(a: FloatArray, name: str, slab: Sequence[str] | None) -> None:
    """Raise unless every value is > 0."""
    bad = a <= 0
    if bad.any():
        values = [float(x) for x in a]
        raise MetaInputError(
            f"{name}: sampling variances must be > 0; {bad_rows(bad, slab, values)}"
        )


def confidence_level(level: float) -> float:
    """A confidence level in percent, given in percent (95) or as a proportion (0.95).

    As metafor reads ``level``: values from 1 up to 100 are percent, values between 0.5
    and 1 a proportion. Values of 0.5 or less are refused here (metafor reads them as
    alpha, which a reader of the call cannot tell from a mistake).

    >>> confidence_level(0.95), confidence_level(90)
    (95.0, 90.0)
    """
    try:
        value = float(level)
    except (TypeError, ValueError):
        raise MetaInputError(f"level: {level!r} is not a number") from None
    if 0.5 < value < 1:
        return round(value * 100, 10)
    if 1 <= value < 100:
        return value
    raise MetaInputError(
        f"level: {level!r} is not a confidence level; give it in percent (95) or as a "
        "proportion (0.95)"
    )


def check_effects(
    yi: ArrayLike, vi: ArrayLike, slab: Sequence[str] | None = None, min_k: int = 2
) -> tuple[FloatArray, FloatArray]:
    """Validate an effect-size vector and its sampling variances.

    >>> y, v = check_effects([0.1, 0.2], [0.01, 0.02])
    >>> y.tolist()
    [0.1, 0.2]
    """
    y = as_vector(yi, "yi", slab)
    v = as_vector(vi, "vi", slab)
    if y.shape != v.shape:
        raise MetaInputError(f"yi has {y.size} values but vi has {v.size}")
    if y.size < min_k:
        raise MetaInputError(
            f"a meta-analysis needs at least {min_k} studies; got {y.size}"
            + (f" ({row_label(0, slab)})" if y.size == 1 else "")
        )
    check_positive(v, "vi", slab)
    ratio = float(v.max() / v.min())
    if ratio >= VARIANCE_RATIO_LIMIT:
        warn(
            f"vi: the largest sampling variance is {ratio:.3g} times the smallest; with weights "
            "this unequal the estimates may be numerically unstable",
            depth=2,
        )
    return y, v
