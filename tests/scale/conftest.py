"""The engine tests' registry fixtures (defined in ``scale_registry``)."""

from scale_registry import registry, registry_parquet

__all__ = ["registry", "registry_parquet"]
