"""Write reaction_diffusion_reference.csv: 400 scattered points of the unit square (fixed
seed) with the exact values of examples/reaction_diffusion.py, columns x, y, u, v.

    python examples/make_reaction_diffusion_reference.py [--n 400] [--seed 7] [--out PATH]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from reaction_diffusion import exact_values  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", default=str(HERE / "reaction_diffusion_reference.csv"))
    args = ap.parse_args(argv)
    pts = np.random.default_rng(args.seed).uniform(0.0, 1.0, size=(args.n, 2))
    values = exact_values(torch.as_tensor(pts)).numpy()
    table = np.concatenate([pts, values], axis=1)
    np.savetxt(args.out, table, delimiter=",", header="x,y,u,v", comments="", fmt="%.17g")
    print(f"wrote {args.n} points to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
