"""Shared fixtures of the unit tests (plain pytest, no MPI)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CASES_DIR = Path(__file__).resolve().parents[1] / "cases"


@pytest.fixture
def cases_dir() -> Path:
    """The shipped case files (``cases/*.toml``)."""
    return CASES_DIR


@pytest.fixture
def poisson_toml(tmp_path) -> Path:
    """A private copy of ``cases/poisson2d.toml`` under ``tmp_path``."""
    dst = tmp_path / "poisson2d.toml"
    shutil.copyfile(CASES_DIR / "poisson2d.toml", dst)
    return dst
