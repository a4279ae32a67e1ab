"""The `datashare` command line, one module per group of commands. The top of the layering:
nothing imports it."""
