"""Where the Taylor-Green vortex's velocity lies in wavevector space: the share of it that
periodic features with ``max |k_i| <= H`` cannot hold, and the share on wavevectors of mixed
parity, from the project's spectral solution.

Prints, for each output time, sqrt(sum |u_k|^2 over the excluded k / sum over all k) (the
relative L2 norm of the excluded part of the velocity) for H = 1..6, and for k with entries of
unequal parity (which ``network.periodic_modes = "equal_parity"`` leaves out), with the number
of cos/sin pairs of each choice in 3D.

    python bench/tgv_modes.py [--n 32] [--nu 0.01] [--times 0 0.5 1 1.5 2]
"""
from __future__ import annotations

import argparse

import numpy as np

from ddpinn.nn.encoding import equal_parity_wavevectors, mixed_wavevectors
from ddpinn.references.spectral import taylor_green_reference


def excluded_shares(velocity: np.ndarray, harmonics) -> dict:
    """{label: relative L2 norm of the velocity outside the set}, velocity (3, n, n, n)."""
    n = velocity.shape[-1]
    k = np.fft.fftfreq(n, 1 / n).astype(int)
    kx, ky, kz = np.meshgrid(k, k, k, indexing="ij")
    energy = (np.abs(np.fft.fftn(velocity, axes=(1, 2, 3))) ** 2).sum(0)
    total = energy.sum()
    kmax = np.maximum(np.maximum(abs(kx), abs(ky)), abs(kz))
    out = {f"outside H={h}": np.sqrt(energy[kmax > h].sum() / total) for h in harmonics}
    equal = ((kx - ky) % 2 == 0) & ((ky - kz) % 2 == 0)
    out["mixed parity"] = np.sqrt(energy[~equal].sum() / total)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=32, help="spectral grid points per axis")
    ap.add_argument("--nu", type=float, default=0.01, help="viscosity (Re = 1 / nu)")
    ap.add_argument("--times", type=float, nargs="+", default=[0.0, 0.5, 1.0, 1.5, 2.0])
    args = ap.parse_args(argv)
    harmonics = range(1, 7)
    ref = taylor_green_reference(args.n, args.nu, args.times)
    print("pairs (3D): " + ", ".join(
        f"H={h} mixed {len(mixed_wavevectors(3, h))} / equal_parity "
        f"{len(equal_parity_wavevectors(3, h))}" for h in harmonics))
    rows = [excluded_shares(ref.velocity[i], harmonics) for i in range(len(ref.times))]
    labels = list(rows[0])
    print("| t | " + " | ".join(labels) + " |")
    print("|---" * (len(labels) + 1) + "|")
    for t, row in zip(ref.times, rows):
        print(f"| {t:.2f} | " + " | ".join(f"{row[k]:.2e}" for k in labels) + " |")


if __name__ == "__main__":
    main()
