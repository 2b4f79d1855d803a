"""Session series as flat NumPy arrays with patient boundaries.

Every analytic in :mod:`alliance.dynamics` works on the same representation: the rows of a
long session table sorted by patient and session, the score as a float array, and the
start offset of each patient's block. Group statistics then come from ``np.add.reduceat``
and running sums within each patient (:meth:`Series.cumsum_within`), never from a Python
loop over patients. No number of a patient depends on the other patients of the batch, to
the last bit: any partition by patient gives the same answer (the promise that lets the
same kernels run on partitions of a distributed engine).

Rows whose score is missing are dropped first: a missing session is skipped, so the
"previous session" of session 5 after a missing session 4 is session 3.

Example
-------
>>> import pandas as pd
>>> table = pd.DataFrame({"patient_id": ["b", "a", "a"], "session": [1, 2, 1],
...                       "score": [3.0, 4.0, 5.0]})
>>> s = prepare_series(table, "score")
>>> s.patients.tolist(), s.x.tolist(), s.starts.tolist()
(['b', 'a'], [3.0, 5.0, 4.0], [0, 1])
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt
import pandas as pd

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class DynamicsInputError(ValueError):
    """A session table that the dynamics functions cannot use (names the column and rule)."""


@dataclass(frozen=True)
class Series:
    """Observed scores of many patients, sorted by patient then session.

    ``patients`` holds one label per patient (in block order), ``code`` the patient block
    of every row, ``starts`` the first row of each block and ``sizes`` the block lengths.
    """

    patients: npt.NDArray[np.object_] | npt.NDArray[np.int64]
    code: IntArray
    session: IntArray
    x: FloatArray
    starts: IntArray
    sizes: IntArray
    rows: IntArray  # position of each row in the caller's table

    @property
    def n_patients(self) -> int:
        return int(self.starts.size)

    @cached_property
    def sd(self) -> FloatArray:
        """Per-patient sample SD of the scores (computed once, reused by every method)."""
        return self.group_sd(self.x)

    @cached_property
    def drop_in_sd(self) -> FloatArray:
        """Fall from the previous scored session in units of the patient's SD.

        NaN on first rows and for patients with fewer than 3 scores or no variation.
        """
        out = np.empty(self.x.size)
        if self.x.size == 0:
            return out
        usable = (self.sizes >= 3) & (self.sd > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            inverse = np.where(usable, 1.0 / self.sd, np.nan)
        np.subtract(self.x[:-1], self.x[1:], out=out[1:])
        out *= inverse[self.code]
        out[self.starts] = np.nan  # the first session has nothing to fall from
        return out

    def first_in_group(self) -> npt.NDArray[np.bool_]:
        """True on the first row of each patient."""
        first = np.zeros(self.x.size, dtype=bool)
        first[self.starts] = True
        return first

    def group_sum(self, values: FloatArray) -> FloatArray:
        """Sum of ``values`` within each patient block."""
        if values.size == 0:
            return np.zeros(0)
        return np.add.reduceat(values, self.starts)

    def group_mean(self, values: FloatArray) -> FloatArray:
        return self.group_sum(values) / self.sizes

    def group_sd(self, values: FloatArray) -> FloatArray:
        """Sample SD (ddof = 1) within each block; NaN for blocks of one row."""
        mean = self.group_mean(values)
        dev = values - mean[self.code]
        dev *= dev
        ss = self.group_sum(dev)
        with np.errstate(invalid="ignore", divide="ignore"):
            sd = np.sqrt(ss / (self.sizes - 1))
        sd[self.sizes < 2] = np.nan
        return np.asarray(sd, dtype=np.float64)

    def broadcast(self, per_patient: FloatArray) -> FloatArray:
        """Repeat one value per patient onto that patient's rows."""
        return per_patient[self.code]

    def shift(self, values: FloatArray, by: int = 1) -> FloatArray:
        """Value ``by`` observed sessions earlier in the same patient (NaN where none)."""
        out = np.full(values.size, np.nan)
        if by <= 0 or values.size <= by:
            return out
        same = self.code[by:] == self.code[:-by]
        out[by:] = np.where(same, values[:-by], np.nan)
        return out

    @cached_property
    def position(self) -> IntArray:
        """Index of each row within its patient's block (0 on first rows)."""
        pos = np.arange(self.x.size, dtype=np.int64)
        pos -= self.starts[self.code]
        return pos

    @cached_property
    def last_row(self) -> IntArray:
        """Row index of each patient's last scored session."""
        return self.starts + self.sizes - 1

    def expanding_sd_through(self, values: FloatArray, min_n: int = 3) -> FloatArray:
        """Sample SD of the patient's values up to and including each row (prospective).

        NaN where fewer than ``min_n`` values are known. Deviations from the patient's first
        value keep the running sums small, so the variance does not cancel catastrophically.
        """
        if values.size == 0:
            return np.zeros(0)
        dev = values - values[self.starts][self.code]
        n = (self.position + 1).astype(np.float64)
        s1 = self.cumsum_within(dev)
        s2 = self.cumsum_within(dev * dev)
        with np.errstate(invalid="ignore", divide="ignore"):
            var = (s2 - s1 * s1 / n) / (n - 1)
        sd = np.sqrt(np.maximum(var, 0.0))
        sd[n < max(min_n, 2)] = np.nan
        return np.asarray(sd, dtype=np.float64)

    def cumsum_within(self, values: FloatArray) -> FloatArray:
        """Running sum of ``values`` within each patient, added in session order from the
        patient's first row: a patient's sums are the same, bit for bit, whichever patients
        share the batch (a cumulative sum over the whole batch carries their rounding).

        One vectorised step per session position, over the patients that reach it (patients
        sorted by length once), so the work stays O(rows).

        >>> import pandas as pd
        >>> t = pd.DataFrame({"patient_id": [1, 1, 1, 2, 2], "session": [1, 2, 3, 1, 2],
        ...                   "v": [1.0, 2.0, 3.0, 10.0, 20.0]})
        >>> s = prepare_series(t, "v")
        >>> s.cumsum_within(s.x).tolist()
        [1.0, 3.0, 6.0, 10.0, 30.0]
        """
        out = np.array(values, dtype=np.float64, copy=True)
        if out.size == 0 or self.sizes.size == 0:
            return out
        longest_first = np.argsort(-self.sizes, kind="stable")
        starts = self.starts[longest_first]
        sizes = self.sizes[longest_first]
        for k in range(1, int(sizes[0])):
            rows = starts[: _reaching(sizes, k)] + k
            out[rows] += out[rows - 1]
        return out

    def expanding_mean_before(self, values: FloatArray) -> FloatArray:
        """Mean of all earlier observed values of the same patient (NaN on first rows)."""
        running = self.cumsum_within(values)
        before = np.full(values.size, np.nan)
        later = self.position > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            before[later] = running[np.flatnonzero(later) - 1] / self.position[later]
        return before


def _reaching(sizes_descending: IntArray, k: int) -> int:
    """How many patients (sorted by length, longest first) have more than ``k`` rows."""
    return int(np.searchsorted(-sizes_descending, -k, side="left"))


def require_columns(table: pd.DataFrame, columns: list[str]) -> None:
    """Raise :class:`DynamicsInputError` naming any missing column."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        known = ", ".join(map(str, table.columns[:20]))
        raise DynamicsInputError(f"missing column(s) {', '.join(missing)}; the table has: {known}")


def _numeric(table: pd.DataFrame, column: str) -> FloatArray:
    col = table[column]
    if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
        return np.asarray(col.to_numpy(dtype=np.float64, na_value=np.nan))
    values = pd.to_numeric(col, errors="coerce")
    bad = values.isna() & table[column].notna()
    if bad.any():
        first = table.loc[bad, column].iloc[0]
        raise DynamicsInputError(f"column {column!r} must be numeric; found {first!r}")
    return np.asarray(values.to_numpy(dtype=np.float64, na_value=np.nan))


def _sessions(table: pd.DataFrame, column: str) -> IntArray:
    col = table[column]
    if pd.api.types.is_integer_dtype(col.dtype) and isinstance(col.dtype, np.dtype):
        return np.asarray(col.to_numpy(dtype=np.int64))
    values = _numeric(table, column)
    if np.isnan(values).any():
        raise DynamicsInputError(f"column {column!r} has missing session numbers")
    if not np.all(values == np.round(values)):
        raise DynamicsInputError(f"column {column!r} must hold whole session numbers")
    return values.astype(np.int64)


def _factorize(ids: pd.Series) -> tuple[IntArray, np.ndarray]:
    if pd.api.types.is_integer_dtype(ids.dtype) and isinstance(ids.dtype, np.dtype):
        raw = ids.to_numpy()
        if raw.size and np.all(raw[1:] >= raw[:-1]):  # sorted integer ids: no hashing needed
            change = np.flatnonzero(raw[1:] != raw[:-1]) + 1
            codes = np.zeros(raw.size, dtype=np.int64)
            codes[change] = 1
            return np.cumsum(codes), raw[np.concatenate(([0], change))]
    if ids.isna().any():
        raise DynamicsInputError("column 'patient_id' has missing values")
    codes, uniques = pd.factorize(ids, sort=False)
    return np.asarray(codes, dtype=np.int64), np.asarray(uniques)


def prepare_series(
    table: pd.DataFrame,
    score: str,
    *,
    patient: str = "patient_id",
    session: str = "session",
    keep_missing: bool = False,
) -> Series:
    """Sort a long session table into a :class:`Series` of one score.

    Rows with a missing score are dropped unless ``keep_missing``. Duplicate
    ``(patient, session)`` pairs are an error. Patients keep the order of first appearance.
    """
    require_columns(table, [patient, session, score])
    x_all = _numeric(table, score)
    sess_all = _sessions(table, session)
    code_all, uniques = _factorize(table[patient])
    rows = np.arange(len(table), dtype=np.int64)
    if not keep_missing:
        keep = ~np.isnan(x_all)
        if not keep.all():
            rows, x_all, sess_all = rows[keep], x_all[keep], sess_all[keep]
            code_all = code_all[keep]
    if not _is_sorted(code_all, sess_all):
        order = np.lexsort((sess_all, code_all))
        rows, x_all, sess_all, code_all = (
            rows[order],
            x_all[order],
            sess_all[order],
            code_all[order],
        )
        _check_unique(code_all, sess_all, table, rows, patient, session)
    return _assemble(code_all, uniques, sess_all, x_all, rows)


def _is_sorted(code: IntArray, sess: IntArray) -> bool:
    """Sorted by patient block, then strictly by session (so also free of duplicates)."""
    if code.size < 2:
        return True
    step = code[1:] - code[:-1]
    if step.min() < 0:
        return False
    later = sess[1:] > sess[:-1]
    later |= step > 0
    return bool(later.all())


def _check_unique(
    code: IntArray,
    sess: IntArray,
    table: pd.DataFrame,
    rows: IntArray,
    patient: str,
    session: str,
) -> None:
    if code.size < 2:
        return
    dup = (np.diff(code) == 0) & (np.diff(sess) == 0)
    if dup.any():
        at = rows[1:][dup][0]
        raise DynamicsInputError(
            f"duplicate session: patient {table[patient].iloc[at]!r} has session "
            f"{table[session].iloc[at]!r} more than once"
        )


def _assemble(
    code: IntArray, uniques: np.ndarray, sess: IntArray, x: FloatArray, rows: IntArray
) -> Series:
    if code.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Series(uniques[:0], empty, empty, np.zeros(0), empty, empty, empty)
    change = code[1:] != code[:-1]
    boundary = np.flatnonzero(change) + 1
    starts = np.concatenate(([0], boundary)).astype(np.int64)
    sizes = np.diff(np.concatenate((starts, [code.size]))).astype(np.int64)
    block = np.zeros(code.size, dtype=np.int64)
    block[1:] = change
    np.cumsum(block, out=block)
    patients = uniques[code[starts]]
    return Series(patients, block, sess, x, starts, sizes, rows)
