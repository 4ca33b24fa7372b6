"""prodvid's Dagster layer: the core's five steps as SKU-partitioned assets, with an inbox sensor.

Thin by design: every module wires `prodvid_core` functions into Dagster concepts and never reimplements
them. `prodvid_dagster.definitions.defs` (a `@dg.definitions` function) is the code location; see
docs/dagster.md for how to run it.
"""
