"""The array views of a decomposition that make set-up linear in the subdomains agree with
the per-subdomain objects; the interface plan matches a direct construction; memory figures
(point batch size, peak RSS, max / mean over ranks) are what they claim."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from ddpinn.decomposition import decompose, owned_sids, partition
from ddpinn.geometry import Box
from ddpinn.interface.exchange import InterfacePlan
from ddpinn.io.config import PointsSection
from ddpinn.parallel import SerialComm
from ddpinn.pdes import PDES
from ddpinn.training.footprint import over_ranks
from ddpinn.training.points import batch_bytes, build_points, padded_rows

from tests.helpers import ROOT

NAMES = ("x", "y", "z", "t")
LAYOUTS = [((3, 2), (True, False), 1), ((2, 3, 2), (False, False, False), 2),
           ((2, 2, 3, 2), (True, False, True, False), 3), ((4,), (True,), None),
           ((3, 1, 2), (False, True, False), None)]


def layout(grid, periodic, time_axis):
    box = Box((0.0,) * len(grid), (1.0,) * len(grid), NAMES[:len(grid)])
    return decompose(box, grid, periodic, time_axis)


@pytest.mark.parametrize("grid,periodic,time_axis", LAYOUTS)
def test_arrays_match_subdomain_and_interface_objects(grid, periodic, time_axis):
    d = layout(grid, periodic, time_axis)
    mask = d.boundary_face_mask(time_axis)
    counts = d.interface_counts()
    for sd in d.subdomains:
        assert tuple(d.index[sd.sid]) == sd.index
        assert (tuple(d.lower[sd.sid]), tuple(d.upper[sd.sid])) == (sd.box.lower, sd.box.upper)
        faces = [(a, 2 * hi - 1) for a, hi in zip(*np.nonzero(mask[sd.sid]))]
        assert faces == d.boundary_faces(sd.sid, time_axis)
        assert counts[sd.sid] == len(d.interfaces_of(sd.sid))
    assert d.interface_sids.tolist() == [[i.lower, i.upper] for i in d.interfaces]
    assert d.interface_axis.tolist() == [i.axis for i in d.interfaces]
    # Objects are made once and kept; the sequences index like lists.
    assert d.interfaces[-1] is d.interfaces[len(d.interfaces) - 1]
    assert [sd.sid for sd in d.subdomains[1:3]] == [1, 2]
    with pytest.raises(IndexError):
        d.subdomains[d.n_subdomains]


def reference_plan(sides, sids, owner, rank):
    """Local partners and per-rank remote sides, one interface side at a time."""
    by_key = {(itf.iid, sids[e]): s for s, (e, _, itf) in enumerate(sides)}
    local, remote = {}, {}
    for s, (e, _, itf) in enumerate(sides):
        other = itf.other(sids[e])
        if owner[other] == rank:
            local[s] = by_key[(itf.iid, other)]
        else:
            remote.setdefault(int(owner[other]), []).append(s)
    return local, {r: sorted(v, key=lambda s: sides[s][2].iid) for r, v in sorted(remote.items())}


@pytest.mark.parametrize("grid,periodic,time_axis", LAYOUTS)
@pytest.mark.parametrize("n_ranks", [1, 3, 4])
def test_plan_matches_direct_construction(grid, periodic, time_axis, n_ranks):
    d = layout(grid, periodic, time_axis)
    if n_ranks > d.n_subdomains:
        pytest.skip("more ranks than subdomains")
    pde = PDES["heat" if time_axis is not None else "poisson"](len(grid) - (time_axis is not None))
    pts = PointsSection(interior=5, boundary=3, interface=4, data=0)
    owner = partition(grid, n_ranks)
    for rank in range(n_ranks):
        sids = owned_sids(owner, rank)
        batch = build_points(d, sids, pde, pts, 1, pde.params, time_axis)
        plan = InterfacePlan(batch.sides, sids, owner, rank, 4, batch.x.shape[1])
        local, remote = reference_plan(batch.sides, sids, owner, rank)
        assert dict(zip(plan.local_self.tolist(), plan.local_partner.tolist())) == local
        assert plan.remote == remote
        rows = [[e * batch.x.shape[1] + r + i for i in range(4)] for e, r, _ in batch.sides]
        assert plan.rows.tolist() == rows


def test_padded_rows_and_batch_bytes():
    d = layout((2, 3, 2), (False, False, False), 2)
    pde = PDES["heat"](2)
    pts = PointsSection(interior=7, boundary=3, interface=5, data=2)
    rows = max(7 + 3 * len(d.boundary_faces(s, 2)) + 2 + 5 * len(d.interfaces_of(s))
               for s in range(d.n_subdomains))
    assert padded_rows(d, pts, 2) == rows
    batch = build_points(d, [1, 4, 5], pde, pts, 0, pde.params, 2)
    assert batch.x.shape == (3, rows, 3)
    assert batch.nbytes == batch_bytes(3, rows, 3, pde.n_out, 8)


# The module is loaded from its file: importing the package would import torch first.
PEAK_PROBE = """
import importlib.util, sys
import numpy as np
spec = importlib.util.spec_from_file_location("footprint", sys.argv[1])
footprint = importlib.util.module_from_spec(spec)
spec.loader.exec_module(footprint)
peak_rss_bytes = footprint.peak_rss_bytes
before = peak_rss_bytes()
block = np.ones(256 * 2 ** 20 // 8)  # 256 MiB, touched
print(before, peak_rss_bytes())
"""


def test_peak_rss_in_bytes():
    """In a fresh process (no torch: a small peak so far), touching 256 MiB raises the peak by
    256 MiB, in bytes."""
    source = ROOT / "ddpinn" / "training" / "footprint.py"
    # Linux carries a process's peak over exec: the probe runs as a grandchild, forked from
    # a small process, not from this one (which holds torch).
    launch = ("import subprocess, sys; subprocess.run([sys.executable, '-c', sys.argv[1], "
              "sys.argv[2]], check=True)")
    proc = subprocess.run([sys.executable, "-c", launch, PEAK_PROBE, str(source)],
                          capture_output=True, text=True, cwd=ROOT, check=True)
    before, after = map(int, proc.stdout.split())
    assert before < 200 * 2 ** 20, before  # the probe is meaningful: the peak was small
    assert 250 * 2 ** 20 <= after - before <= 300 * 2 ** 20, (before, after)


def test_over_ranks():
    assert over_ranks(SerialComm(), {"a": 3.0, "b": 5}) == {"a": (3.0, 3.0), "b": (5.0, 5.0)}


def test_info_reports_memory_per_rank():
    case = ROOT / "cases" / "beltrami3d.toml"
    proc = subprocess.run([sys.executable, "-m", "ddpinn.cli", "info", str(case), "--ranks", "4",
                           "--set", "decomposition.grid=[4, 4, 4, 2]"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.split()[:1] == ["rank"])
    assert lines[head].split()[-4:] == ["params", "MB", "points", "MB"]
    rows = [ln.split() for ln in lines[head + 1:head + 5]]
    assert [r[0] for r in rows] == ["0", "1", "2", "3"] and all(r[1] == "32" for r in rows)
    # 32 experts x N rows x (4 coordinates + 1 + 4 x 4 outputs) float32 values
    n_rows = int(lines[head - 1].split("rows per expert")[0].split(",")[-1])
    assert float(rows[0][-1]) == pytest.approx(32 * n_rows * 21 * 4 / 2 ** 20, abs=0.006)
    assert any(ln.startswith("peak RSS of this command:") for ln in lines)
