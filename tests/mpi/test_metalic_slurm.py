"""``slurm/metalic_array.sbatch`` on a private single-node Slurm cluster: two array tasks work
through one campaign, each round a 2-rank ``srun --mpi=pmi2`` job step.

Needs ``bash .ci/install_slurm.sh`` and root (see tests/slurm/slurm_cluster.py); skipped with
a message otherwise.
"""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

from .conftest import ROOT
from .test_metalic_campaign import TINY

sys.path.insert(0, str(ROOT / "tests" / "slurm"))
from slurm_cluster import SlurmCluster, missing_requirements  # noqa: E402

pytest.importorskip("sklearn")
pytestmark = pytest.mark.skipif(missing_requirements() is not None,
                                reason=str(missing_requirements()))


def test_array_tasks_share_one_campaign(tmp_path):
    camp = tmp_path / "heat.toml"
    camp.write_text(f"""
[campaign]
name = "heat_slurm"
case = "{ROOT / 'cases' / 'heat1d.toml'}"
rounds = 3
warmup = 2
restarts = 0
[contexts.kappa]
low = 0.02
high = 0.5
scale = "log"
[arms]
list = [["average_solution", "residual_continuity"], ["solution_continuity", "flux_continuity"]]
[reward]
source = "errors"
key = "l2_u"
[run]
ranks = 2
heartbeat = 1.0
set = {json.dumps(TINY)}
""")
    env = {"DDPINN_PYTHON": sys.executable, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with SlurmCluster(tmp_path / "slurm") as cluster:
        job = cluster.sbatch(["--array=0-1", "--ntasks=2", "--time=10:00",
                              "-o", tmp_path / "task_%a.out",
                              ROOT / "slurm" / "metalic_array.sbatch", camp, 2],
                             env=env, cwd=tmp_path)
        final = cluster.wait(job, timeout=900)
        logs = "\n".join(p.read_text() for p in sorted(tmp_path.glob("task_*.out")))
        assert final == "COMPLETED", f"{final}\n{logs}\n{cluster.logs()}"
    state = json.loads((tmp_path / "runs" / "metalic" / "heat_slurm" / "state.json").read_text())
    rounds = state["rounds"]
    assert [r["status"] for r in rounds] == ["done"] * 3, logs
    jobs = {m for r in rounds for line in r["log"] for m in re.findall(r"\(job (\S+)\)", line)}
    assert jobs <= {f"{job}_0", f"{job}_1"} and jobs, jobs
    for r in rounds:
        cmd = (Path(r["run_dir"]) / "command.txt").read_text()
        assert cmd.startswith("srun --mpi=pmi2 --kill-on-bad-exit=1 -n 2 "), cmd
        assert (Path(r["run_dir"]) / "errors.json").is_file()
