"""Streaming Parquet in patient-complete batches (DuckDB) gives the single-process answer:
the same scores, events, alerts and trajectories, whatever the batches."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from scale_registry import ITEMS, PLANTED, assert_same_rows, jobs, single_process, with_scores

from alliance.dynamics import estimate_norms
from alliance.scale import BAD_ROW_COLUMNS, Job, run_batch

pytest.importorskip("duckdb", reason="the stream engine needs alliance[scale] (duckdb)")

from alliance.scale import stream

ROWS_PER_BATCH = 150  # 891 sessions: six buckets


def streamed(source: Path, job: Job, tmp_path: Path, rows_per_batch: int = ROWS_PER_BATCH):
    out, bad = tmp_path / "out", tmp_path / "out_bad_rows"
    seen: list[tuple[int, int]] = []
    with stream.buckets(source, rows_per_batch) as parts:
        counts = stream.run_stream(parts, job, out, bad, lambda d, n: seen.append((d, n)))
    result = pd.read_parquet(out)
    assert counts == (len(result), len(pd.read_parquet(bad)))
    assert seen and seen[-1][0] == seen[-1][1] == len(seen)  # the progress reached the end
    return result, pd.read_parquet(bad)


@pytest.mark.parametrize("kind", ["score", "ruptures", "alerts", "trajectories"])
def test_stream_equals_the_single_process_answer(
    kind: str, registry: pd.DataFrame, registry_parquet: Path, tmp_path: Path
) -> None:
    result, _ = streamed(registry_parquet, jobs()[kind], tmp_path)
    reference = single_process(registry, kind)
    assert len(reference) > 0
    assert_same_rows(result, reference)


def test_stream_used_several_batches(registry_parquet: Path, registry: pd.DataFrame) -> None:
    """The equality above is across batches, not one batch holding everything."""
    with stream.buckets(registry_parquet, ROWS_PER_BATCH) as parts:
        sizes = [len(parts.read(k)) for k in range(len(parts.paths))]
        patients = [set(parts.read(k)["patient_id"]) for k in range(len(parts.paths))]
    assert len(sizes) == 6 and sum(sizes) == len(registry) and max(sizes) < len(registry)
    for k, these in enumerate(patients):  # each patient whole, in one bucket
        assert all(these.isdisjoint(other) for other in patients[k + 1 :])


def test_one_bucket_equals_many(registry_parquet: Path, tmp_path: Path) -> None:
    many, _ = streamed(registry_parquet, jobs()["ruptures"], tmp_path / "many")
    one, _ = streamed(registry_parquet, jobs()["ruptures"], tmp_path / "one", 10**9)
    assert_same_rows(many, one)


def test_bad_rows_are_a_table_beside_the_output(
    registry: pd.DataFrame, registry_parquet: Path, tmp_path: Path
) -> None:
    result, bad = streamed(registry_parquet, jobs()["score"], tmp_path)
    assert list(bad.columns) == BAD_ROW_COLUMNS  # where and why, never the value
    planted = {
        (registry.loc[r, "patient_id"], registry.loc[r, "session"], c) for r, c, _ in PLANTED
    }
    assert set(zip(bad["patient_id"], bad["session"], bad["column"], strict=True)) == planted
    assert set(bad["instrument"]) == {"wai_sr"}
    assert bad["rule"].str.len().min() > 0
    for patient, session, _ in planted:  # the session is left unscored, and says why
        row = result[(result["patient_id"] == patient) & (result["session"] == session)]
        assert row["wai_sr_total"].isna().all()
        assert row["wai_sr_status"].str.startswith("not scored").all()


def test_norms_from_first_rows_of_every_batch_equal_norms_from_the_whole_table(
    registry: pd.DataFrame, registry_parquet: Path
) -> None:
    job = Job("ruptures", "wai_sr")
    with stream.buckets(registry_parquet, ROWS_PER_BATCH) as parts:
        first = stream.stream_first_scored_rows(parts, job)
    whole = with_scores(registry)
    from_batches = estimate_norms(first, "wai_sr_total", item_columns=ITEMS)
    from_table = estimate_norms(whole, "wai_sr_total", item_columns=ITEMS)
    assert from_batches == from_table
    assert len(first) == registry["patient_id"].nunique()


def test_a_failure_mid_job_leaves_no_output_and_the_old_one_untouched(
    registry_parquet: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, bad = tmp_path / "out", tmp_path / "out_bad_rows"
    out.mkdir()
    (out / "earlier.parquet").write_bytes(b"an earlier run")
    calls = {"n": 0}

    def failing(job: Job, batch: pd.DataFrame):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("worker lost")
        return run_batch(job, batch)

    monkeypatch.setattr(stream, "run_batch", failing)
    with (
        stream.buckets(registry_parquet, ROWS_PER_BATCH) as parts,
        pytest.raises(RuntimeError, match="worker lost"),
    ):
        stream.run_stream(parts, jobs()["score"], out, bad)
    assert [p.name for p in out.iterdir()] == ["earlier.parquet"]
    assert (out / "earlier.parquet").read_bytes() == b"an earlier run"
    assert not bad.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "registry"]  # no staging left


def test_an_empty_bucket_still_has_the_declared_columns(tmp_path: Path) -> None:
    """Two patients in many buckets: most are empty, and the dataset still reads as one."""
    table = pd.DataFrame(
        {"patient_id": ["a"] * 3 + ["b"] * 3, "session": [1, 2, 3] * 2}
        | {f"srs_{i}": [9.0, 3.0, 9.0, 8.0, 8.0, 8.0] for i in range(1, 5)}
    )
    source = tmp_path / "two.parquet"
    table.to_parquet(source, index=False)
    result, bad = streamed(source, Job("ruptures", "srs"), tmp_path, rows_per_batch=1)
    assert {"patient_id", "method", "rupture_session"} <= set(result.columns)
    assert bad.empty and list(bad.columns) == BAD_ROW_COLUMNS
