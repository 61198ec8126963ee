"""Fixtures for the deployment checks: the manifests, the Dockerfile, and the server's facts
read from its sources (deploylib.py). Nothing here needs a cluster, a Docker engine or network."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import deploylib  # noqa: E402


@pytest.fixture
def bundle() -> deploylib.Bundle:
    """The manifests, loaded afresh for every test (tests may break their copy)."""
    return deploylib.load_bundle()


@pytest.fixture
def dockerfile() -> deploylib.Dockerfile:
    return deploylib.load_dockerfile()
