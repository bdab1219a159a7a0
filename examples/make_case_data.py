"""Write the data files of the shipped cases that read [[data]] tables.

- ``cases/heat1d_observations.csv``: 256 measurements of the 1D heat solution
  u = exp(-kappa pi^2 t) sin(pi x), kappa = 0.1, at random (x, t), with Gaussian noise of
  1 % of max |u| (for ``cases/heat1d_inverse_csv.toml``);
- ``cases/kovasznay_boundary.csv``: u, v, p of the Kovasznay flow (Re = 40) at 401 points
  along each edge of [-0.5, 1] x [-0.5, 1.5] (for ``cases/kovasznay_csv_boundary.toml``).

Run: python examples/make_case_data.py [--out-dir cases]
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def heat_observations(n: int = 256, kappa: float = 0.1, noise: float = 0.01,
                      seed: int = 7) -> np.ndarray:
    """Columns x, t, u: (n, 3)."""
    rng = np.random.default_rng(seed)
    x, t = rng.random(n), rng.random(n)
    u = np.exp(-kappa * math.pi ** 2 * t) * np.sin(math.pi * x)
    return np.stack([x, t, u + noise * rng.standard_normal(n)], axis=1)


def kovasznay(x: np.ndarray, y: np.ndarray, nu: float = 0.025):
    """u, v, p of the Kovasznay flow."""
    re = 1.0 / nu
    lam = re / 2 - math.sqrt(re ** 2 / 4 + 4 * math.pi ** 2)
    u = 1 - np.exp(lam * x) * np.cos(2 * math.pi * y)
    v = lam / (2 * math.pi) * np.exp(lam * x) * np.sin(2 * math.pi * y)
    p = 0.5 * (1 - np.exp(2 * lam * x))
    return u, v, p


def kovasznay_boundary(n: int = 401) -> np.ndarray:
    """Columns x, y, u, v, p on the four edges: (4 n - 4, 5)."""
    lo, hi = (-0.5, -0.5), (1.0, 1.5)
    s = np.linspace(0.0, 1.0, n)
    edges = []
    for axis in (0, 1):
        other = 1 - axis
        for end in (lo[axis], hi[axis]):
            pts = np.empty((n, 2))
            pts[:, axis] = end
            pts[:, other] = lo[other] + s * (hi[other] - lo[other])
            edges.append(pts)
    pts = np.unique(np.concatenate(edges), axis=0)
    return np.concatenate([pts, np.stack(kovasznay(pts[:, 0], pts[:, 1]), axis=1)], axis=1)


def write_csv(path: Path, header: str, rows: np.ndarray) -> None:
    np.savetxt(path, rows, delimiter=",", header=header, comments="", fmt="%.17g")
    print(f"wrote {path} ({len(rows)} rows)")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out-dir", default=str(HERE.parent / "cases"))
    args = p.parse_args(argv)
    out = Path(args.out_dir)
    write_csv(out / "heat1d_observations.csv", "x,t,u", heat_observations())
    write_csv(out / "kovasznay_boundary.csv", "x,y,u,v,p", kovasznay_boundary())


if __name__ == "__main__":
    main()
