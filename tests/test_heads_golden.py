"""Golden values of a seeded tiny Next Forcing model (loss terms, gradient statistics).

The stored values live in ``tests/golden/tiny_next_forcing.json``; how they are computed and
how to regenerate them after an intended change of the numerics is in
``tests/golden/regenerate.py``:

    .venv/bin/python -m tests.golden.regenerate
"""

import importlib.util
import json
from pathlib import Path

import pytest

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"


def load_regenerate():
    """``tests/golden/regenerate.py`` by path (``tests`` is not an installed package)."""
    spec = importlib.util.spec_from_file_location("golden_regenerate", GOLDEN_DIR / "regenerate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_next_forcing_matches_golden_values():
    regenerate = load_regenerate()
    stored = json.loads(regenerate.GOLDEN_PATH.read_text())
    current = regenerate.compute_golden()
    assert set(current) == set(stored)
    assert {"loss/mcp1", "loss/mcp2", "loss/mcp3", "grad/global_norm"} <= set(stored)
    assert all(value > 0 for key, value in stored.items() if key.startswith("grad/"))
    for key, value in stored.items():
        assert current[key] == pytest.approx(value, rel=1e-5), key
