"""Shared test setup: import the client package from Proto/python without installing it."""

import sys
from pathlib import Path

import pytest

PYTHON_DIR = Path(__file__).resolve().parent.parent
PROTO_DIR = PYTHON_DIR.parent
GOLDEN_DIR = PROTO_DIR / "golden"

if str(PYTHON_DIR) not in sys.path:
    sys.path.insert(0, str(PYTHON_DIR))


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    return GOLDEN_DIR
