"""Where a datashare home keeps everything, from its settings: the drop zone, the lake, the
warehouse, Dagster's instance and its `dagster.yaml`. Imports nothing else of datashare."""
