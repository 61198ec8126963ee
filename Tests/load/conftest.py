"""Fixtures for the load-tool tests: the end-to-end suite's (Tests/e2e/conftest.py: certificates,
the real server process, launchers), loaded under another module name, plus the tool itself.

The load tool is the same binary as the server (`scenescore load`), SCENESCORE_BIN or
.build/release/scenescore; every test is skipped, with the reason, when it cannot run.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
E2E = HERE.parent / "e2e"
for path in (E2E, E2E.parent.parent / "Proto" / "python"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

_spec = importlib.util.spec_from_file_location("e2e_fixtures", E2E / "conftest.py")
e2e = importlib.util.module_from_spec(_spec)
sys.modules["e2e_fixtures"] = e2e
_spec.loader.exec_module(e2e)

# Re-exported so pytest finds them here.
certs = e2e.certs
model_dir = e2e.model_dir
model = e2e.model
server = e2e.server
launcher = e2e.launcher
BINARY = e2e.BINARY


def pytest_collection_modifyitems(config, items):
    e2e.pytest_collection_modifyitems(config, items)
