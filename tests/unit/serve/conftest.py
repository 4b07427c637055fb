"""Fixtures of the service's unit tests (the world itself is built in ``world.py``)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest


def _load_world_module():
    name = "safeguard_tests_serve_world"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("world.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return _load_world_module().World(tmp_path_factory.mktemp("serve-world"))
