"""datashare's engine, in packages from the bottom up (docs/architecture.md): home, lake,
intake, validation, governance, warehouse, oversight, reviews, desk, demo, then the Dagster
side (`assets/` and `pipelines.orchestration`) and the command line (`pipelines.cli`).
A package imports only those before it; `tests/test_layering.py` holds it to that."""
