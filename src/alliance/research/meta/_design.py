"""Design matrices for meta-regression (private; re-exported by ``regression``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from alliance.research.meta._validate import FloatArray, MetaInputError, bad_rows


def _is_categorical(s: pd.Series) -> bool:
    return not pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)


def _columns(mods: pd.DataFrame, slab: Sequence[str] | None) -> tuple[list[FloatArray], list[str]]:
    cols: list[FloatArray] = []
    names: list[str] = []
    for name in mods.columns:
        s = mods[name]
        miss = s.isna().to_numpy()
        if miss.any():
            raise MetaInputError(f"moderator {name!r}: missing in {bad_rows(miss, slab)}")
        if _is_categorical(s):
            levels = sorted(s.astype(str).unique())
            for lev in levels[1:]:  # first level (alphabetical, as R) is the reference
                cols.append((s.astype(str) == lev).to_numpy(dtype=np.float64))
                names.append(f"{name}[{lev}]")
        else:
            a = s.to_numpy(dtype=np.float64)
            bad = ~np.isfinite(a)
            if bad.any():
                raise MetaInputError(f"moderator {name!r}: not finite in {bad_rows(bad, slab)}")
            cols.append(a)
            names.append(str(name))
    return cols, names


def design_matrix(
    mods: pd.DataFrame | ArrayLike | None,
    k: int,
    intercept: bool = True,
    slab: Sequence[str] | None = None,
) -> tuple[FloatArray, tuple[str, ...]]:
    """Model matrix for ``k`` studies from moderators.

    Numeric columns enter as they are; text, categorical and boolean columns are
    dummy-coded with the alphabetically first level as reference (as R's
    ``factor``). Returns the (k, p) matrix and coefficient names.

    >>> X, names = design_matrix(pd.DataFrame({"age": [20, 30, 40], "g": list("aba")}), 3)
    >>> names
    ('intrcpt', 'age', 'g[b]')
    >>> X[:, 2].tolist()
    [0.0, 1.0, 0.0]
    """
    if mods is None and intercept:
        return np.ones((k, 1)), ("intrcpt",)
    cols: list[FloatArray] = [np.ones(k)] if intercept else []
    names: list[str] = ["intrcpt"] if intercept else []
    if mods is not None:
        df = mods if isinstance(mods, pd.DataFrame) else _array_frame(mods)
        if len(df) != k:
            raise MetaInputError(f"moderators have {len(df)} rows but there are {k} studies")
        more, more_names = _columns(df, slab)
        cols += more
        names += more_names
    if not cols:
        raise MetaInputError("the model has no coefficients (no intercept and no moderators)")
    X = np.column_stack(cols)
    if np.linalg.matrix_rank(X) < X.shape[1]:
        raise MetaInputError(
            f"moderators are collinear (rank {np.linalg.matrix_rank(X)} < {X.shape[1]} "
            f"coefficients: {', '.join(names)})"
        )
    return X, tuple(names)


def _array_frame(mods: ArrayLike) -> pd.DataFrame:
    a = np.asarray(mods)
    if a.ndim == 1:
        a = a[:, None]
    return pd.DataFrame(a, columns=[f"mod{j + 1}" for j in range(a.shape[1])])
