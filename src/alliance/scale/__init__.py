"""Registry scale: the same scoring, rupture, trajectory and alert kernels on batches of
whole patients, in one process, streamed from Parquet larger than memory, or on Spark.

- :func:`run_batch`: one batch (the kernel every engine runs);
- :func:`alliance.scale.stream.run_stream`: Parquet in, Parquet out, in patient-complete
  batches (DuckDB), with a progress bar, for users without a cluster;
- :func:`alliance.scale.spark.run_spark`: a Spark DataFrame grouped by patient bucket,
  Arrow-backed ``applyInPandas`` with a declared output schema (``alliance[scale]``).

Example
-------
>>> from alliance.scale import Job
>>> Job("ruptures", "wai_sr").column
'wai_sr_total'
"""

from alliance.scale.kernels import BAD_ROW_COLUMNS, KINDS, Job, first_scored_rows, run_batch

__all__ = ["BAD_ROW_COLUMNS", "KINDS", "Job", "first_scored_rows", "run_batch"]
