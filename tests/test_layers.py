import pkgutil
import subprocess
import sys

import prodvid_core


def test_core_never_imports_dagster():
    modules = [f"prodvid_core.{m.name}" for m in pkgutil.iter_modules(prodvid_core.__path__)]
    assert "prodvid_core.frames" in modules and "prodvid_core.inbox" in modules
    code = "import importlib, sys\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules)
    code += "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('dagster', 'prodvid_dagster'))\n"
    code += "assert not bad, bad\n"
    subprocess.run([sys.executable, "-c", code], check=True)
