"""The kernels on Spark: a DataFrame of sessions grouped by a patient bucket, each group
(every row of a set of whole patients) handed to :func:`~alliance.scale.run_batch` through
Arrow-backed ``applyInPandas`` with the output schema declared; no Python function per row.

Patients are bucketed (``pmod(xxhash64(patient_id), buckets)``) rather than grouped one by
one: a group per patient would pay Spark's per-group overhead a million times on a
registry, while a bucket still holds each patient whole, which is all the kernels need.

Example
-------
>>> from alliance.scale.spark import spark_type
>>> spark_type("long").simpleString()
'bigint'
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pandas as pd

from alliance.scale.kernels import Job, bad_rows, first_scored_rows, run_batch
from alliance.scale.schema import (
    Columns,
    bad_row_columns,
    conform,
    first_rows_columns,
    kind_of,
    output_columns,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

BUCKET = "_alliance_bucket"
# PySpark 4.0 warns on every conversion that it does not yet support pandas 3 (and about
# a deprecated pandas keyword); the
# conversions these kernels use are checked against the single-process answer
# (tests/scale/test_scale_spark.py), so the warning says nothing to our users.
warnings.filterwarnings(
    "ignore", message="PySpark does not yet fully support pandas", category=FutureWarning
)
warnings.filterwarnings("ignore", message="The copy keyword is deprecated", module="pyspark")


def spark_type(kind: str) -> Any:
    """The Spark SQL type of one of our column types."""
    from pyspark.sql import types as T

    return {
        "string": T.StringType(),
        "long": T.LongType(),
        "double": T.DoubleType(),
        "boolean": T.BooleanType(),
    }[kind]


def spark_schema(columns: Columns) -> Any:
    from pyspark.sql import types as T

    return T.StructType([T.StructField(n, spark_type(k), True) for n, k in columns])


def input_columns(df: DataFrame) -> dict[str, str]:
    """Our column types of a DataFrame's columns."""
    from pyspark.sql.pandas.types import to_arrow_type

    return {f.name: kind_of(to_arrow_type(f.dataType)) for f in df.schema.fields}


def local_session(master: str | None = None) -> SparkSession:
    """A Spark session (``master``, default ``local[2]``) with Arrow on, for tests, the
    benchmark and the CLI; under spark-submit use the session spark-submit configures."""
    from pyspark.sql import SparkSession

    # the workers run this interpreter (with alliance), not whatever python3 is on PATH
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    return (
        SparkSession.builder.master(master or "local[2]")
        .appName("alliance")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )


def _bucketed(df: DataFrame, buckets: int) -> DataFrame:
    from pyspark.sql import functions as F

    return df.withColumn(BUCKET, F.pmod(F.xxhash64("patient_id"), F.lit(buckets)))


def _apply(
    df: DataFrame, columns: Columns, kernel: Callable[[pd.DataFrame], pd.DataFrame]
) -> DataFrame:
    def each(batch: pd.DataFrame) -> pd.DataFrame:
        return conform(kernel(batch.drop(columns=BUCKET).reset_index(drop=True)), columns)

    return df.groupBy(BUCKET).applyInPandas(each, schema=spark_schema(columns))


def run_spark(df: DataFrame, job: Job, buckets: int | None = None) -> tuple[DataFrame, DataFrame]:
    """(result, bad rows) of ``job`` on a Spark DataFrame of sessions; both lazy.

    ``buckets``: groups of whole patients (default: four per core of the cluster).
    """
    inputs = input_columns(df)
    n = buckets or 4 * df.sparkSession.sparkContext.defaultParallelism
    keyed = _bucketed(df, n)
    result = _apply(keyed, output_columns(job, inputs), lambda b: run_batch(job, b)[0])
    bad = _apply(keyed, bad_row_columns(inputs), lambda b: bad_rows(b)[1])
    return result, bad


def spark_first_scored_rows(df: DataFrame, job: Job, buckets: int | None = None) -> pd.DataFrame:
    """Every patient's first scored session, collected (for norms estimated from the data),
    in patient order, as :func:`~alliance.scale.first_scored_rows` gives them."""
    inputs = input_columns(df)
    n = buckets or 4 * df.sparkSession.sparkContext.defaultParallelism
    columns = first_rows_columns(job, inputs)
    rows = _apply(_bucketed(df, n), columns, lambda b: first_scored_rows(job, b)).toPandas()
    return _in_patient_order(rows)


def _in_patient_order(rows: pd.DataFrame) -> pd.DataFrame:
    return rows.sort_values(["patient_id", "session"], kind="stable").reset_index(drop=True)
