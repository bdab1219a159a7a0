"""Bad geometry input: one message naming the field, exit 2, nothing written."""
from __future__ import annotations

import pytest

from tests.helpers import ROOT, run_case

BASE = (ROOT / "tests" / "mpi" / "cases" / "shape_invariance.toml").read_text()


def _open_stl(path):
    trimesh = pytest.importorskip("trimesh")
    mesh = trimesh.creation.box(extents=[1.0, 1.0, 1.0])
    mesh.update_faces(list(range(len(mesh.faces) - 1)))  # one triangle missing: not closed
    mesh.export(str(path))


CASES = {
    "empty domain": (BASE.replace("center = [0.25, 0.25], radius = 0.1",
                                  "center = [0.5, 0.5], radius = 5.0"), (), "domain.shape"),
    # the L-shape leaves 3 of the 2x2 cells: a fourth rank would have no subdomain
    "rank without work": (BASE, ("decomposition.grid=[2, 2]",), "decomposition.grid"),
    "unknown tag": (BASE.replace('tags = "hole"', 'tags = "holes"'), (), "boundary[1].tags"),
    "unknown name": (BASE.replace('tags = "outer"\nkind = "dirichlet"\nvalues = "exact"',
                                  'tags = "outer"\nkind = "dirichlet"\nvalues = "sin(q*x)"'),
                     (), "boundary[0].values"),
}


@pytest.mark.parametrize("name", sorted(CASES) + ["open stl"])
def test_bad_geometry_input_is_one_message_and_nothing_written(tmp_path, name):
    if name == "open stl":
        _open_stl(tmp_path / "open.stl")
        text = BASE.replace(BASE[BASE.index("[domain.shape]"):BASE.index("[decomposition]")],
                            '[domain.shape]\ntype = "stl"\nfile = "open.stl"\ntag = "outer"\n\n')
        text = text.replace("grid = [4, 4]", "grid = [2, 2, 2]").replace(
            '[[boundary]]\ntags = "hole"\nkind = "neumann"\nvalues = "exact"\n', "")
        sets, field = (), "domain.shape.file"
    else:
        text, sets, field = CASES[name]
    case = tmp_path / "case.toml"
    case.write_text(text)
    out = tmp_path / "run"
    proc, _ = run_case(4 if name == "rank without work" else 2, case, out, *sets, timeout=120)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert field in proc.stderr, proc.stderr[-3000:]
    errors = [ln for ln in proc.stderr.splitlines() if "error" in ln.lower()]
    assert len(set(errors)) == 1, proc.stderr[-3000:]
    assert not out.exists()
