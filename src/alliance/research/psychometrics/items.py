"""Item-level checks of answer quality: floor and ceiling effects, straight-lining.

Implemented: the share of answers at an item's lowest and highest possible value, and of
administrations whose scale score is at its minimum or maximum, overall or per value of a
column such as ``session`` (alliance ratings drift towards the ceiling as therapy goes on);
and straight-lining, every item of an administration given the same answer.

Why our own: these are simple counts, but each needs the response scale of the items (from
the caller or from the instrument library) and the same column conventions as the rest of
:mod:`alliance.research.psychometrics`; no library we depend on has them.

>>> import pandas as pd
>>> t = pd.DataFrame({"a": [1, 5, 5, 3], "b": [2, 5, 5, 3]})
>>> floor_ceiling(t, low=1, high=5)["ceiling"].to_dict()
{'a': 0.5, 'b': 0.5, 'scale': 0.5}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from alliance.research.psychometrics.reliability import Block, PsychometricsError, numeric_block

Bound = float | Mapping[str, float] | None


def _by_column(data: pd.DataFrame, by: str | None) -> None:
    if by is not None and by not in data.columns:
        raise PsychometricsError(f"{by}: column (by=) is missing from the data")


def _bounds(
    columns: Sequence[str], low: Bound, high: Bound, instrument: str | None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-item lowest and highest possible answer, from the arguments or the instrument."""
    if instrument is not None:
        from alliance.instruments import get_instrument

        inst = get_instrument(instrument)
        scales = {c: inst.item_scale(it.number) for c, it in zip(inst.item_columns, inst.items)}
        unknown = [c for c in columns if c not in scales]
        if unknown:
            raise PsychometricsError(f"{unknown[0]}: not an item column of {instrument!r}")
        return (
            np.array([scales[c].min for c in columns], dtype=np.float64),
            np.array([scales[c].max for c in columns], dtype=np.float64),
        )
    if low is None or high is None:
        raise PsychometricsError("give the response scale: low and high, or an instrument id")
    lows, highs = _per_item(columns, low, "low"), _per_item(columns, high, "high")
    bad = np.flatnonzero(highs <= lows)
    if bad.size:
        raise PsychometricsError(f"{columns[bad[0]]}: high must exceed low")
    return lows, highs


def _per_item(columns: Sequence[str], bound: float | Mapping[str, float], name: str) -> np.ndarray:
    if isinstance(bound, Mapping):
        missing = [c for c in columns if c not in bound]
        if missing:
            raise PsychometricsError(f"{missing[0]}: no {name} bound given for this column")
        return np.array([float(bound[c]) for c in columns], dtype=np.float64)
    return np.full(len(columns), float(bound), dtype=np.float64)


def floor_ceiling(
    data: pd.DataFrame,
    items: Sequence[str] | None = None,
    low: Bound = None,
    high: Bound = None,
    by: str | None = None,
    instrument: str | None = None,
) -> pd.DataFrame:
    """Share of answers at the lowest (``floor``) and highest (``ceiling``) possible value,
    per item and for the scale score (the row ``scale``: its sum or mean is at its minimum
    exactly when every item is at its floor). ``low``/``high`` are one bound for all items or
    a mapping column -> bound; or pass an ``instrument`` id to read each item's scale from the
    instrument library (``items`` then default to the instrument's item columns). With
    ``by``, one block of rows per value of that column (a MultiIndex ``(by, item)``). Rows
    with any missing item are left out; ``n`` counts the rows used. An answer off the scale
    is refused.

    >>> import pandas as pd
    >>> t = pd.DataFrame({"session": [1, 1, 2, 2], "a": [1, 3, 5, 5], "b": [1, 2, 4, 5]})
    >>> floor_ceiling(t, low=1, high=5, by="session")["ceiling"].unstack().to_dict("index")
    {1: {'a': 0.0, 'b': 0.0, 'scale': 0.0}, 2: {'a': 1.0, 'b': 0.5, 'scale': 0.5}}
    """
    _by_column(data, by)
    if instrument is not None and (low is not None or high is not None):
        raise PsychometricsError("give either low and high or instrument, not both")
    if items is None and instrument is not None:
        from alliance.instruments import get_instrument

        items = get_instrument(instrument).item_columns
    exclude = () if by is None else (by,)
    block = numeric_block(data, items, min_items=1, min_rows=1, constant_ok=True, exclude=exclude)
    lows, highs = _bounds(block.columns, low, high, instrument)
    _check_on_scale(block, lows, highs)
    at_floor, at_ceiling = block.values == lows, block.values == highs
    # scale score at its min (max) exactly when every item is at its floor (ceiling)
    flags = pd.DataFrame(
        np.hstack(
            [
                at_floor,
                at_floor.all(axis=1, keepdims=True),
                at_ceiling,
                at_ceiling.all(axis=1, keepdims=True),
            ]
        )
    )
    names = [*block.columns, "scale"]
    if by is None:
        shares, counts = flags.mean().to_frame().T, np.array([len(flags)])
        index: pd.Index = pd.Index(names, name="item")
    else:
        grouped = flags.groupby(data.loc[block.complete, by].to_numpy())
        shares, counts = grouped.mean(), grouped.size().to_numpy()
        index = pd.MultiIndex.from_product([shares.index, names], names=[by, "item"])
    k = len(names)
    values = shares.to_numpy(dtype=np.float64)
    return pd.DataFrame(
        {
            "n": np.repeat(counts, k),
            "floor": values[:, :k].ravel(),
            "ceiling": values[:, k:].ravel(),
        },
        index=index,
    )


def _check_on_scale(block: Block, lows: np.ndarray, highs: np.ndarray) -> None:
    off = (block.values < lows) | (block.values > highs)
    if off.any():
        j = int(np.flatnonzero(off.any(axis=0))[0])
        value = block.values[off[:, j], j][0]
        raise PsychometricsError(
            f"{block.columns[j]}: answer {value:g} lies outside the scale {lows[j]:g}..{highs[j]:g}"
        )


def straight_lining(data: pd.DataFrame, items: Sequence[str] | None = None) -> pd.Series:
    """Per row (same index as ``data``): True when every item has the same answer; rows with
    any missing item are False.

    >>> import pandas as pd
    >>> t = pd.DataFrame({"a": [3, 1, 4, None], "b": [3, 2, 4, 4], "c": [3, 5, 4, 4]})
    >>> straight_lining(t).tolist()
    [True, False, True, False]
    """
    block = numeric_block(data, items, min_rows=0, constant_ok=True)
    flags = np.zeros(len(data), dtype=bool)
    flags[block.complete] = np.ptp(block.values, axis=1) == 0
    return pd.Series(flags, index=data.index, name="straight_lining")


def straight_lining_share(
    data: pd.DataFrame, items: Sequence[str] | None = None, by: str | None = None
) -> pd.DataFrame:
    """How many complete rows (``n``) were straight-lined (``n_straight``) and their
    ``share``, overall (one row, ``all``) or per value of ``by``.

    >>> import pandas as pd
    >>> t = pd.DataFrame({"session": [1, 1, 2, 2], "a": [3, 1, 4, 5], "b": [3, 2, 4, 5]})
    >>> straight_lining_share(t, ["a", "b"], by="session")["share"].to_dict()
    {1: 0.5, 2: 1.0}
    """
    _by_column(data, by)
    exclude = () if by is None else (by,)
    block = numeric_block(data, items, min_rows=0, constant_ok=True, exclude=exclude)
    flags = pd.Series(np.ptp(block.values, axis=1) == 0, dtype=bool)
    if by is None:
        groups = np.full(len(flags), "all", dtype=object)
    else:
        groups = data.loc[block.complete, by].to_numpy()
    grouped = flags.groupby(groups)
    table = pd.DataFrame({"n": grouped.size(), "n_straight": grouped.sum().astype(int)})
    table["share"] = table["n_straight"] / table["n"]
    table.index.name = by
    return table
