"""The kernels on Parquet larger than memory, in one process: DuckDB deals the rows into
patient buckets on disk (out of core), then each bucket, every row of its patients, goes
through :func:`~alliance.scale.run_batch` and is written as one part of the output dataset.

DuckDB does the one step pandas cannot do in bounded memory, the shuffle by patient; the
kernels are the same as everywhere else, so the answers are too.

Example
-------
>>> from alliance.scale.stream import bucket_count
>>> bucket_count(20_000_000, 500_000)
40
"""

from __future__ import annotations

import contextlib
import math
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from alliance.io.tables import InputFileError
from alliance.scale.kernels import Job, first_scored_rows, run_batch
from alliance.scale.schema import (
    Columns,
    arrow_schema,
    bad_row_columns,
    conform,
    kind_of,
    output_columns,
)

BUCKET = "_alliance_bucket"
ROWS_PER_BATCH = 500_000
Progress = Callable[[int, int], None]  # (buckets done, buckets in all)


def bucket_count(rows: int, rows_per_batch: int = ROWS_PER_BATCH) -> int:
    """How many patient buckets keep a batch near ``rows_per_batch`` rows."""
    return max(1, math.ceil(rows / rows_per_batch))


def _quoted(path: Path | str) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _patient(rename: Mapping[str, str] | None) -> str:
    """The source's name of the column that becomes ``patient_id``."""
    return next((old for old, new in (rename or {}).items() if new == "patient_id"), "patient_id")


def _source(path: Path) -> str:
    """DuckDB's argument for a Parquet file or a folder of them (any depth)."""
    return _quoted(path / "**" / "*.parquet" if path.is_dir() else path)


@dataclass(frozen=True)
class Buckets:
    """A Parquet source dealt into patient buckets in a scratch folder."""

    paths: Sequence[Path]
    inputs: dict[str, str]  # column name -> our type
    rows: int

    def read(self, k: int) -> pd.DataFrame:
        """Every row of bucket ``k``'s patients."""
        if not self.paths[k].exists():
            return pd.DataFrame({c: pd.Series(dtype=object) for c in self.inputs})
        frame: pd.DataFrame = ds.dataset(self.paths[k], format="parquet").to_table().to_pandas()
        return frame.reset_index(drop=True)


def input_columns(source: Path, rename: Mapping[str, str] | None = None) -> dict[str, str]:
    """The source's columns (after ``rename``, old: new names) and our types of them; a
    source that is not Parquet, a rename of a column it lacks, or no ``patient_id`` or
    ``session``, is refused here, before any work."""
    try:
        schema = ds.dataset(source, format="parquet").schema
    except (OSError, pa.ArrowException) as exc:
        raise InputFileError(f"{source}: not a Parquet file or folder of them ({exc})") from None
    inputs = {f.name: kind_of(f.type) for f in schema if f.name != BUCKET}
    unknown = [old for old in rename or {} if old not in inputs]
    if unknown:
        raise InputFileError(f"--map: column map names column(s) not in the source: {unknown}")
    renamed = {(rename or {}).get(name, name): kind for name, kind in inputs.items()}
    if len(renamed) < len(inputs):
        raise InputFileError("--map: two columns would have the same name")
    for needed in ("patient_id", "session"):
        if needed not in renamed:
            raise InputFileError(
                f"missing column {needed!r} (a long table has patient_id, session)"
            )
    return renamed


@contextlib.contextmanager
def buckets(
    source: Path,
    rows_per_batch: int = ROWS_PER_BATCH,
    scratch: Path | None = None,
    rename: Mapping[str, str] | None = None,
) -> Iterator[Buckets]:
    """Deal ``source`` into patient buckets (removed afterwards), columns renamed by
    ``rename`` (old: new names, as ``--map``)."""
    import duckdb

    inputs = input_columns(source, rename)
    names = ds.dataset(source, format="parquet").schema.names
    select = ", ".join(
        f"{_ident(old)} AS {_ident((rename or {}).get(old, old))}" for old in names if old != BUCKET
    )
    with tempfile.TemporaryDirectory(prefix="alliance-buckets-", dir=scratch) as tmp:
        con = duckdb.connect()
        try:
            con.execute(f"SET temp_directory = {_quoted(Path(tmp) / 'spill')}")
            counted = con.execute(f"SELECT count(*) FROM read_parquet({_source(source)})")
            rows = int(counted.fetchone()[0])  # type: ignore[index]  # count(*) has one row
            n = bucket_count(rows, rows_per_batch)
            con.execute(
                f"COPY (SELECT {select}, hash({_ident(_patient(rename))}) % {n} AS {BUCKET} "
                f"FROM read_parquet({_source(source)})) TO {_quoted(Path(tmp) / 'b')} "
                f"(FORMAT parquet, PARTITION_BY ({BUCKET}))"
            )
        finally:
            con.close()
        paths = [Path(tmp) / "b" / f"{BUCKET}={k}" for k in range(n)]
        yield Buckets(paths, inputs, rows)


def stream_first_scored_rows(parts: Buckets, job: Job) -> pd.DataFrame:
    """Every patient's first scored session, in patient order (for norms from the data)."""
    found = [first_scored_rows(job, parts.read(k)) for k in range(len(parts.paths))]
    rows = pd.concat(found, ignore_index=True)
    return rows.sort_values(["patient_id", "session"], kind="stable").reset_index(drop=True)


def run_stream(
    parts: Buckets, job: Job, output: Path, bad_output: Path, progress: Progress | None = None
) -> tuple[int, int]:
    """Run ``job`` on every bucket; write the results as the Parquet dataset ``output`` and
    the bad rows as ``bad_output`` (each folder complete or absent: they are assembled
    beside their final place and renamed at the end). Returns (result rows, bad rows)."""
    columns = output_columns(job, parts.inputs)
    bad_columns = bad_row_columns(parts.inputs)
    with _staged(output) as out_dir, _staged(bad_output) as bad_dir:
        counts = [0, 0]
        for k in range(len(parts.paths)):
            result, bad = run_batch(job, parts.read(k))
            counts[0] += _write(result, columns, out_dir / f"part-{k:05d}.parquet")
            counts[1] += _write(bad, bad_columns, bad_dir / f"part-{k:05d}.parquet")
            if progress is not None:
                progress(k + 1, len(parts.paths))
    return counts[0], counts[1]


def _write(frame: pd.DataFrame, columns: Columns, path: Path) -> int:
    table = pa.Table.from_pandas(
        conform(frame, columns), arrow_schema(columns), preserve_index=False
    )
    pq.write_table(table, path)
    return int(table.num_rows)


@contextlib.contextmanager
def _staged(final: Path) -> Iterator[Path]:
    """A folder that becomes ``final`` only when the block completes."""
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final)
    staging.rename(final)
