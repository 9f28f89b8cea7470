from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.detector.data.importers.exporters import small_v1


@pytest.fixture(scope="session")
def v1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generator's v1, small: 20/8/4 images at 96 px (read-only for the tests)."""
    return small_v1(tmp_path_factory.mktemp("gen") / "v1")
