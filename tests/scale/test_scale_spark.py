"""The kernels on Spark in local mode (``local[2]``) give the single-process answer: the
same scores, events and alerts, bit for bit, and the invalid answers as a table."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from scale_registry import PLANTED, assert_same_rows, jobs, single_process, with_scores

from alliance.dynamics import estimate_norms
from alliance.scale import BAD_ROW_COLUMNS, Job

pytest.importorskip("pyspark", reason="the Spark engine needs alliance[scale] (pyspark)")
if shutil.which("java") is None:
    pytest.skip("Spark needs Java (17 on these machines); none on PATH", allow_module_level=True)

from alliance.scale import spark


@pytest.fixture(scope="module")
def session() -> Iterator[Any]:
    started = spark.local_session("local[2]")
    yield started
    started.stop()


@pytest.fixture(scope="module")
def sessions_df(session: Any, registry: pd.DataFrame) -> Any:
    return session.createDataFrame(registry).repartition(3)


@pytest.mark.parametrize("kind", ["score", "ruptures", "alerts", "trajectories"])
def test_spark_equals_the_single_process_answer(
    kind: str, sessions_df: Any, registry: pd.DataFrame
) -> None:
    result, _ = spark.run_spark(sessions_df, jobs()[kind], buckets=5)
    reference = single_process(registry, kind)
    assert len(reference) > 0
    assert_same_rows(result.toPandas(), reference)


def test_bad_rows_are_a_table_not_a_crash(sessions_df: Any, registry: pd.DataFrame) -> None:
    _, bad = spark.run_spark(sessions_df, jobs()["ruptures"], buckets=5)
    table = bad.toPandas()
    assert list(table.columns) == BAD_ROW_COLUMNS
    planted = {
        (registry.loc[r, "patient_id"], registry.loc[r, "session"], c) for r, c, _ in PLANTED
    }
    assert set(zip(table["patient_id"], table["session"], table["column"], strict=True)) == planted


def test_norms_from_the_data_equal_the_whole_table_estimate(
    sessions_df: Any, registry: pd.DataFrame
) -> None:
    first = spark.spark_first_scored_rows(sessions_df, Job("ruptures", "wai_sr"), buckets=5)
    items = [f"wai_sr_{i}" for i in range(1, 13)]
    whole = with_scores(registry)
    assert estimate_norms(first, "wai_sr_total", item_columns=items) == estimate_norms(
        whole, "wai_sr_total", item_columns=items
    )
