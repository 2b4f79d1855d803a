"""``--engine stream|spark`` of ``alliance score``, ``ruptures`` and ``alerts``: the same
options on Parquet datasets larger than memory (``stream``: one process, DuckDB) or on
Spark (``spark``: ``local[2]`` unless ``SPARK_MASTER`` names a cluster).

Input and output are Parquet (a file or a folder; for Spark, any path Spark reads, e.g.
``s3a://...``); ``--map`` renames the source's columns as they are read. A bad row does not
stop the job: each invalid answer becomes a row of the table written beside the output
(``<output>_bad_rows``), and the answer is left out.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Literal

import pandas as pd
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from alliance.cli.common import fail, need_extra, stderr, user_errors, warn
from alliance.dynamics import Norms
from alliance.instruments import get_instrument
from alliance.scale import Job
from alliance.scoring import UnverifiedKeyWarning

Engine = Literal["local", "stream", "spark"]
EngineOpt = Annotated[
    Engine,
    typer.Option(
        "--engine",
        help="local: in memory; stream: Parquet larger than memory, in patient batches; "
        "spark: on Spark (alliance[scale]). With stream or spark, -o names the output folder.",
    ),
]
URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):/(?!/)")


@dataclass(frozen=True)
class NormsRequest:
    """How the command asked for norms (``--norms``, ``--reliability``)."""

    source: Literal["auto", "instrument", "data"]
    reliability: float | None
    required: bool


def spark_path(path: Path) -> str:
    """The path as typed: ``Path`` folds ``s3a://b/x`` to ``s3a:/b/x``; Spark needs it back."""
    return URL_SCHEME.sub(r"\1://", str(path))


def run_engine(
    engine: Engine,
    source: Path,
    output: Path | None,
    make_job: Callable[[pd.DataFrame], Job],
    norms: NormsRequest | None = None,
    rename: dict[str, str] | None = None,
) -> None:
    """Resolve the job from the input's columns (renamed by ``rename``, ``--map``'s old:
    new names), fix the norms once, run, write."""
    if output is None:
        fail("--output: with --engine stream or spark, name the output folder (-o DIR)")
    need_extra("scale", "duckdb" if engine == "stream" else "pyspark")
    bad_output = output.with_name(output.name + "_bad_rows")
    if engine == "stream":
        _stream(source, output, bad_output, make_job, norms, rename)
    else:
        _spark(source, output, bad_output, make_job, norms, rename)


def job_columns(inputs: dict[str, str]) -> pd.DataFrame:
    """An empty table with the input's columns, for the column checks of the commands."""
    for needed in ("patient_id", "session"):
        if needed not in inputs:
            fail(f"missing column {needed!r} (a long table has patient_id, session, ...)")
    return pd.DataFrame(columns=list(inputs))


def _fixed_norms(
    job: Job, norms: NormsRequest | None, first_rows: Callable[[], pd.DataFrame]
) -> Job:
    """The job with its norms: the instrument's, or estimated from every patient's first
    scored session (one extra pass), by the rules of the in-memory command."""
    if norms is None:
        return job
    from alliance.cli.dynamics import resolve_norms
    from alliance.dynamics import instrument_norms

    inst = get_instrument(job.instrument)
    published = instrument_norms(inst, job.score, job.metric)
    needs_data = norms.source == "data" or (published is None and norms.source == "auto")
    rows = first_rows() if needs_data else pd.DataFrame(columns=["patient_id", job.column])
    found: Norms | None = resolve_norms(
        rows, job.column, inst, job.metric, norms.source, norms.reliability, required=norms.required
    )
    return replace(job, norms=found)


def say_unverified(job: Job) -> None:
    """The unverified-key warning of the job's form, said once here (the kernels are quiet)."""
    from alliance.scoring import score

    inst = get_instrument(job.instrument)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnverifiedKeyWarning)
        score(pd.DataFrame(columns=inst.item_columns, dtype=float), inst, form=job.form)
    for message in {str(w.message) for w in caught if w.category is UnverifiedKeyWarning}:
        warn(message)


def _report(rows: int, bad: int, output: Path | str, bad_output: Path | str) -> None:
    typer.echo(f"{rows} row(s) written to {output}", err=True)
    if bad:
        warn(f"{bad} invalid answer(s) left out: see {bad_output}")


def _stream(
    source: Path,
    output: Path,
    bad_output: Path,
    make_job: Callable[[pd.DataFrame], Job],
    norms: NormsRequest | None,
    rename: dict[str, str] | None,
) -> None:
    from alliance.scale.stream import (
        buckets,
        input_columns,
        run_stream,
        stream_first_scored_rows,
    )

    if not source.exists():
        fail(f"{source}: no such file or folder")
    columns = [
        TextColumn("patient batches"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    ]
    with user_errors():
        input_columns(source, rename)  # refused before DuckDB starts
    scratch = output.parent if output.parent.exists() else None
    with buckets(source, scratch=scratch, rename=rename) as parts:
        job = make_job(job_columns(parts.inputs))
        say_unverified(job)
        job = _fixed_norms(job, norms, lambda: stream_first_scored_rows(parts, job))
        with Progress(*columns, console=stderr, transient=True) as progress:
            task = progress.add_task("batches", total=len(parts.paths))
            rows, bad = run_stream(
                parts,
                job,
                output,
                bad_output,
                lambda done, _: progress.update(task, completed=done),
            )
    _report(rows, bad, output, bad_output)


def _spark(
    source: Path,
    output: Path,
    bad_output: Path,
    make_job: Callable[[pd.DataFrame], Job],
    norms: NormsRequest | None,
    rename: dict[str, str] | None,
) -> None:
    import os

    from alliance.scale.spark import (
        input_columns,
        local_session,
        run_spark,
        spark_first_scored_rows,
    )

    spark = local_session(os.environ.get("SPARK_MASTER"))
    df = spark.read.parquet(spark_path(source))
    unknown = [old for old in rename or {} if old not in df.columns]
    if unknown:
        fail(f"--map: column map names column(s) not in the source: {unknown}")
    if rename:
        df = df.withColumnsRenamed(rename)
    job = make_job(job_columns(input_columns(df)))
    say_unverified(job)
    job = _fixed_norms(job, norms, lambda: spark_first_scored_rows(df, job))
    result, bad = run_spark(df, job)
    result.write.mode("overwrite").parquet(spark_path(output))
    bad.write.mode("overwrite").parquet(spark_path(bad_output))
    written = spark.read.parquet(spark_path(output)).count()
    invalid = spark.read.parquet(spark_path(bad_output)).count()
    _report(written, invalid, spark_path(output), spark_path(bad_output))
