"""Shared fixtures of the tests (plain pytest; the mpi and case tests launch mpiexec)."""
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


# Data files that shipped cases name but that a command makes (too large to ship): a small
# version of each, made once per test session into a data directory that also links the
# usual one ($DDPINN_DATA, read by the tests' subprocesses too).
CASE_DATA_COMMANDS = {
    ("tgv1600_sub.nc", "tgv1600_sub_ref.nc"): [
        "reference", "tgv-subvolume", "--n", "16", "--points", "9", "--reference-points", "5",
        "--dt", "0.25"],
}


@pytest.fixture(scope="session", autouse=True)
def case_data(tmp_path_factory):
    """``$DDPINN_DATA`` for the session: the usual data directory's files, linked, and small
    versions of the data files the shipped cases make with a command."""
    import os
    import subprocess
    import sys

    from ddpinn.io.reference import data_dir

    usual = data_dir()
    folder = tmp_path_factory.mktemp("case_data")
    if usual.is_dir():
        for f in usual.iterdir():
            (folder / f.name).symlink_to(f.resolve())
    for (out, ref), args in CASE_DATA_COMMANDS.items():
        subprocess.run([sys.executable, "-m", "ddpinn.cli", *args, "--out", str(folder / out),
                        "--reference-out", str(folder / ref)], check=True,
                       capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    old = os.environ.get("DDPINN_DATA")
    os.environ["DDPINN_DATA"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("DDPINN_DATA", None)
    else:
        os.environ["DDPINN_DATA"] = old
