"""The declared output columns of each kernel, as (name, type) pairs that map to Arrow
and Spark types, and the conversion of a kernel's pandas output to them: an engine that
assembles batches (Spark's ``applyInPandas``, a Parquet dataset) needs every batch in one
schema, whatever a batch happened to hold (no events, a column all missing).

Example
-------
>>> from alliance.scale import Job
>>> [t for n, t in output_columns(Job("ruptures", "wai_sr"), {"patient_id": "string"})][:3]
['string', 'string', 'long']
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from alliance.scale.kernels import BAD_ROW_COLUMNS, Job
from alliance.scoring import UnverifiedKeyWarning, score

Columns = list[tuple[str, str]]  # (name, "string" | "long" | "double" | "boolean")
_S, _L, _D = "string", "long", "double"
RUPTURES: Columns = [
    ("method", _S), ("rupture_session", _L), ("score_before", _D), ("score_at", _D),
    ("drop", _D), ("threshold", _D), ("repaired", _S), ("repair_session", _L),
    ("sessions_to_repair", _L), ("intensity", _D),
]  # fmt: skip
ALERTS: Columns = [
    ("kind", _S), ("opened_session", _L), ("last_session", _L), ("closed_session", _L),
    ("state", _S), ("severity", _S), ("escalated_session", _L), ("title", _S),
    ("reason", _S), ("detail", _S), ("close_reason", _S), ("method", _S), ("value", _D),
    ("threshold", _D), ("score", _S), ("key_status", _S), ("guidance", _S), ("sources", _S),
]  # fmt: skip
TRAJECTORIES: Columns = [
    ("n_sessions", _L), ("first_session", _L), ("last_session", _L), ("level", _D),
    ("slope", _D), ("early_alliance", _D), ("early_n", _L), ("variability", _D),
    ("rmssd", _D), ("last_score", _D),
]  # fmt: skip
ARROW = {_S: pa.string(), _L: pa.int64(), _D: pa.float64(), "boolean": pa.bool_()}
ARROW_DTYPES: dict[str, Any] = {_S: object, _L: "int64", _D: "float64", "boolean": "boolean"}


def kind_of(dtype: pa.DataType) -> str:
    """Our column type of an Arrow type (dates and other types travel as strings)."""
    if pa.types.is_integer(dtype):
        return _L
    if pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
        return _D
    if pa.types.is_boolean(dtype):
        return "boolean"
    return _S


def output_columns(job: Job, inputs: Mapping[str, str]) -> Columns:
    """The kernel's output columns for input columns of the given types."""
    patient = [("patient_id", inputs["patient_id"])]
    if job.kind == "ruptures":
        return patient + RUPTURES
    if job.kind == "trajectories":
        return patient + TRAJECTORIES
    if job.kind == "alerts":
        therapist = [("therapist_id", inputs.get("therapist_id", _S))]
        return patient + therapist + ALERTS
    return [
        (n, inputs.get(n, _S if n.endswith("_status") else _D)) for n in scored_names(job, inputs)
    ]


def scored_names(job: Job, inputs: Mapping[str, str]) -> list[str]:
    """The columns :func:`~alliance.scoring.score` gives for input columns of these names
    (the other columns, then the scores): asked of the scorer itself, on no rows."""
    empty = pd.DataFrame(
        {name: pd.Series(dtype=ARROW_DTYPES[kind]) for name, kind in inputs.items()}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnverifiedKeyWarning)
        return list(score(empty, job.instrument, form=job.form, metric=job.metric).columns)


def first_rows_columns(job: Job, inputs: Mapping[str, str]) -> Columns:
    """The columns of :func:`~alliance.scale.first_scored_rows`: the input's (items too,
    for the reliability) and the scores."""
    scores = output_columns(replace(job, kind="score"), inputs)
    return list(inputs.items()) + [(n, t) for n, t in scores if n not in inputs]


def bad_row_columns(inputs: Mapping[str, str]) -> Columns:
    """The bad-rows table's columns."""
    kinds = {"patient_id": inputs["patient_id"], "session": inputs["session"]}
    return [(c, kinds.get(c, _S)) for c in BAD_ROW_COLUMNS]


def arrow_schema(columns: Columns) -> pa.Schema:
    return pa.schema([(name, ARROW[kind]) for name, kind in columns])


def conform(frame: pd.DataFrame, columns: Columns) -> pd.DataFrame:
    """``frame`` with exactly ``columns``, each converted to its type (missing: null)."""
    frame = frame.reset_index(drop=True)  # a kernel may hand back a filtered index
    out: dict[str, Any] = {}
    for name, kind in columns:
        values = frame[name] if name in frame.columns else pd.Series(index=frame.index)
        if kind == _S:
            text = values.astype(object)
            out[name] = text.where(values.notna(), None).map(
                lambda v: v if v is None or isinstance(v, str) else str(v)
            )
        elif kind == _L and pd.api.types.is_integer_dtype(values.dtype):
            out[name] = values.astype("Int64")
        elif kind == _L:  # whole numbers held as floats (NaN for none)
            floats = values.to_numpy(dtype=np.float64)
            out[name] = pd.array(floats, dtype="Float64").astype("Int64")
        elif kind == _D:
            out[name] = values.to_numpy(dtype=np.float64)
        else:
            out[name] = values.astype("boolean")
    return pd.DataFrame(out, index=range(len(frame)))
