"""The project's wheel, built once per test run for every packaging test."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.packaging.support import build_wheel


@pytest.fixture(scope="session")
def project_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))
