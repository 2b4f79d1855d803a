"""``alliance score|ruptures|alerts --engine stream|spark``, run as a user runs them: the
same options and answers as the in-memory command, Parquet folders in and out, bad rows as
a table beside the output, and the usual exit 2 for a mistake in the command."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from scale_registry import assert_same_rows

pytest.importorskip("duckdb", reason="the engines need alliance[scale]")

ALLIANCE = str(Path(sys.executable).parent / "alliance")


def run(*args: str | Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ALLIANCE_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run(
        [ALLIANCE, *map(str, args)], capture_output=True, text=True, env=env, timeout=300
    )


def local_answer(command: str, registry: pd.DataFrame, tmp_path: Path, *options: str):
    """The in-memory command on the same rows (one Parquet file), ``--errors flag``."""
    source = tmp_path / "whole.parquet"
    registry.to_parquet(source, index=False)
    out = tmp_path / f"local-{command}.parquet"
    done = run(command, source, "--errors", "flag", *options, "-o", out, home=tmp_path)
    assert done.returncode == 0, done.stderr
    return pd.read_parquet(out)


@pytest.mark.parametrize(
    ("command", "options"),
    [
        ("score", ()),
        ("ruptures", ("--method", "rci_drop", "--method", "stiles2004")),
        ("alerts", ("--allow-unverified",)),
    ],
)
def test_stream_engine_equals_the_in_memory_command(
    command: str,
    options: tuple[str, ...],
    registry: pd.DataFrame,
    registry_parquet: Path,
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    done = run(command, registry_parquet, "--engine", "stream", *options, "-o", out, home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "2 invalid answer(s) left out" in done.stderr
    assert (tmp_path / "out_bad_rows").is_dir()
    reference = local_answer(command, registry, tmp_path, *options)
    assert len(reference) > 0
    assert_same_rows(pd.read_parquet(out), reference)


def test_norms_from_the_data_are_estimated_once_over_all_batches(
    registry: pd.DataFrame, registry_parquet: Path, tmp_path: Path
) -> None:
    """``--norms data``: the stream's thresholds are the whole table's, not a batch's."""
    options = ("--method", "rci_drop", "--norms", "data")
    out = tmp_path / "out"
    done = run(
        "ruptures", registry_parquet, "--engine", "stream", *options, "-o", out, home=tmp_path
    )
    assert done.returncode == 0, done.stderr
    streamed = pd.read_parquet(out)
    assert_same_rows(streamed, local_answer("ruptures", registry, tmp_path, *options))
    assert streamed["threshold"].nunique() == 1


@pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs Java; none on PATH")
def test_spark_engine_equals_the_in_memory_command(
    registry: pd.DataFrame, registry_parquet: Path, tmp_path: Path
) -> None:
    pytest.importorskip("pyspark", reason="the Spark engine needs alliance[scale]")
    out = tmp_path / "out"
    done = run("ruptures", registry_parquet, "--engine", "spark", "-o", out, home=tmp_path)
    assert done.returncode == 0, done.stderr
    bad = pd.read_parquet(tmp_path / "out_bad_rows")
    assert len(bad) == 2 and "value" not in bad.columns
    assert_same_rows(pd.read_parquet(out), local_answer("ruptures", registry, tmp_path))


@pytest.mark.parametrize("engine", ["stream", "spark"])
def test_map_renames_the_source_columns_as_the_in_memory_command_does(
    engine: str, registry: pd.DataFrame, tmp_path: Path
) -> None:
    if engine == "spark" and (shutil.which("java") is None or not _has("pyspark")):
        pytest.skip("Spark needs Java and alliance[scale]")
    names = {"patient_id": "pid"} | {f"wai_sr_{i}": f"Q{i}" for i in range(1, 13)}
    source = tmp_path / "theirs.parquet"
    registry.rename(columns=names).to_parquet(source, index=False)
    spec = ",".join(f"{theirs}={ours}" for ours, theirs in names.items())
    out = tmp_path / "out"
    done = run("score", source, "--engine", engine, "--map", spec, "-o", out, home=tmp_path)
    assert done.returncode == 0, done.stderr
    local = tmp_path / "local.parquet"
    done = run("score", source, "--map", spec, "--errors", "flag", "-o", local, home=tmp_path)
    assert done.returncode == 0, done.stderr
    reference = pd.read_parquet(local)
    assert "patient_id" in reference.columns and "wai_sr_total" in reference.columns
    assert_same_rows(pd.read_parquet(out), reference)


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("ruptures", "--engine", "stream"), "--output"),
        (("alerts", "--engine", "stream", "--retrospective", "-o", "OUT"), "prospective"),
        (("score", "--engine", "stream", "--map", "a=b", "-o", "OUT"), "--map"),
        (("ruptures", "--engine", "stream", "-i", "nope", "-o", "OUT"), "nope"),
    ],
)
def test_mistakes_exit_2_and_write_nothing(
    args: tuple[str, ...], message: str, registry_parquet: Path, tmp_path: Path
) -> None:
    command, *rest = args
    rest = [str(tmp_path / "out") if a == "OUT" else a for a in rest]
    done = run(command, registry_parquet, *rest, home=tmp_path)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_a_source_without_patient_id_is_named(tmp_path: Path) -> None:
    source = tmp_path / "no-patient.parquet"
    pd.DataFrame({"session": [1, 2], **{f"srs_{i}": [9.0, 8.0] for i in range(1, 5)}}).to_parquet(
        source, index=False
    )
    done = run("ruptures", source, "--engine", "stream", "-o", tmp_path / "out", home=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "patient_id" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()
