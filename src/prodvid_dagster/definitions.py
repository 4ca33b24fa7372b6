"""The code location: every module of `prodvid_dagster/defs/`, loaded by `dg.load_from_defs_folder`.

`dg dev`, `dg check defs` and the code server of deploy/ load `defs` from here ([tool.dg] in pyproject.toml
names this package). Tests call `defs()` for the `Definitions`.
"""

from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
