"""How well the experts of a subvolume deck can represent the data at all: plain regression of
u, v, w on the gridded data of a cube (no physics, every grid node available), to tell a
network's capacity apart from what the PINN makes of boundary data.

Reads the NetCDF grid file of ``ddpinn reference tgv-subvolume`` (t, x, y, z), takes the cube
``[lower, lower + side]^3`` and the window ``[t0, t0 + window]`` of it, splits it into the
expert grid, and fits one :class:`~ddpinn.nn.experts.BatchedMLP` per cell (float32, Adam on
random batches of ``--batch`` nodes per expert) for ``--minutes``; prints the relative L2
error of the velocity over every node of the cube.

    python bench/tgv_subvolume_fit.py runs/tgvsub/tgv1600_sub.nc --offset 0.25 --side 0.5 \\
        --fourier-features 64 --fourier-scale 2 --minutes 3
"""
from __future__ import annotations

import argparse
import math
import time

import netCDF4
import numpy as np
import torch

from ddpinn.decomposition.grid import decompose
from ddpinn.decomposition.locate import locate
from ddpinn.geometry.box import Box
from ddpinn.nn.experts import BatchedMLP


def cube_data(path, offset: float, side: float, window: float):
    """(points (P, 4) x, y, z, t; velocity (P, 3); lower (4,); upper (4,)) of the cube whose
    lower corner and side are fractions ``offset`` and ``side`` of the file's cube."""
    with netCDF4.Dataset(path) as ds:
        axes = {a: np.asarray(ds[a][:]) for a in "xyzt"}
        span = {a: (c[0] + (c[-1] - c[0]) * offset, c[0] + (c[-1] - c[0]) * (offset + side))
                for a, c in axes.items() if a != "t"}
        span["t"] = (axes["t"][0], axes["t"][0] + window)
        keep = {a: np.flatnonzero((c >= span[a][0] - 1e-9) & (c <= span[a][1] + 1e-9))
                for a, c in axes.items()}
        index = np.ix_(keep["t"], keep["x"], keep["y"], keep["z"])
        vel = np.stack([np.asarray(ds[f][:])[index] for f in "uvw"], axis=-1)
    mesh = np.meshgrid(*(axes[a][keep[a]] for a in "txyz"), indexing="ij")
    points = np.stack([mesh[1], mesh[2], mesh[3], mesh[0]], axis=-1).reshape(-1, 4)
    lower = np.array([axes[a][keep[a][0]] for a in "xyzt"])
    upper = np.array([axes[a][keep[a][-1]] for a in "xyzt"])
    return points, vel.reshape(-1, 3), lower, upper


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file")
    ap.add_argument("--offset", type=float, default=0.0, help="lower corner, a fraction of "
                    "the file's cube side from its lower corner")
    ap.add_argument("--side", type=float, default=1.0, help="a fraction of the file's side")
    ap.add_argument("--window", type=float, default=0.5)
    ap.add_argument("--grid", type=int, nargs=4, default=[2, 2, 2, 1])
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--fourier-features", type=int, default=0)
    ap.add_argument("--fourier-scale", type=float, default=1.0)
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--batch", type=int, default=2000, help="nodes per expert and step")
    ap.add_argument("--lr", type=float, default=2e-3)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    points, vel, lower, upper = cube_data(args.file, args.offset, args.side, args.window)
    cells = decompose(Box(tuple(lower), tuple(upper), ("x", "y", "z", "t")), args.grid,
                      time_axis=3)
    owner = locate(points, cells)
    rows = [np.flatnonzero(owner == e) for e in range(cells.n_subdomains)]
    model = BatchedMLP(list(range(cells.n_subdomains)), cells.lower, cells.upper, 3,
                       width=args.width, depth=args.depth,
                       fourier_features=args.fourier_features,
                       fourier_scale=args.fourier_scale, dtype=torch.float32)
    x, y = torch.tensor(points, dtype=torch.float32), torch.tensor(vel, dtype=torch.float32)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    decay = torch.optim.lr_scheduler.ExponentialLR(opt, 0.9995)
    print(f"{len(points)} nodes, cube {lower[:3]} .. {upper[:3]}, t {lower[3]} .. {upper[3]}, "
          f"{cells.n_subdomains} experts")
    start, steps = time.perf_counter(), 0
    while time.perf_counter() - start < 60 * args.minutes:
        batch = torch.as_tensor(np.stack([rng.choice(r, args.batch) for r in rows]))
        loss = ((model.network(x[batch]) - y[batch]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        decay.step()
        steps += 1
    num = 0.0
    with torch.no_grad():
        for e, r in enumerate(rows):
            for part in np.array_split(r, max(1, len(r) // 20000)):
                pred = model.network(x[part][None].expand(cells.n_subdomains, -1, -1))[e]
                num += float(((pred - y[part]) ** 2).sum())
    error = math.sqrt(num / float((y ** 2).sum()))
    print(f"{steps} Adam steps in {args.minutes} min: velocity relative L2 {error:.4e}")


if __name__ == "__main__":
    main()
