"""Print pip constraints that pin every direct dependency of pyproject.toml to its declared lower bound.

pip has no "lowest" resolution, so `.ci/lowest` installs under these pins: the direct dependencies at the
oldest versions we claim to support, everything they pull in resolved as usual (uv calls this
`lowest-direct`). A dependency without a single `>=` (or `==`) bound is an error: its bound is unproven.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement


def lowest_pins(pyproject: Path) -> list[str]:
    """`name==<lower bound>` for each entry of `[project] dependencies`."""
    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    pins = []
    for line in dependencies:
        req = Requirement(line)
        lows = [spec.version for spec in req.specifier if spec.operator in (">=", "==")]
        if len(lows) != 1:
            sys.exit(f"pyproject.toml: {line!r} has no single lower bound: declare one with '>='.")
        pins.append(f"{req.name}=={lows[0]}")
    return pins


if __name__ == "__main__":
    print("\n".join(lowest_pins(Path(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml"))))
