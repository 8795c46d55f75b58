from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def sandbox(tmp_path):
    from adloop.sandbox.server import Sandbox

    with Sandbox(tmp_path / "sandbox.db") as running:
        yield running
