"""The Dagster code location and how runs are made: definitions, the delivery sensor, the
instance, `datashare run`'s runs (one per contract) and why a run failed, in words."""
