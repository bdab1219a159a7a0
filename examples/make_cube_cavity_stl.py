"""Write cases/cube_cavity.stl: the unit cube with a spherical cavity of radius 0.25 at its
centre, as one closed triangle surface (the cavity's triangles face into the hole).

Run: python examples/make_cube_cavity_stl.py [OUT]
"""
from __future__ import annotations

import sys
from pathlib import Path

import trimesh


def cube_with_cavity(radius: float = 0.25, subdivisions: int = 2) -> trimesh.Trimesh:
    """The closed surface of [0, 1]^3 minus the ball of ``radius`` at its centre."""
    cube = trimesh.creation.box(extents=[1.0, 1.0, 1.0])
    sphere = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    sphere.invert()  # outward normals of the solid point into the cavity
    mesh = trimesh.util.concatenate([cube, sphere])
    mesh.apply_translation([0.5, 0.5, 0.5])
    return mesh


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else \
        Path(__file__).resolve().parents[1] / "cases" / "cube_cavity.stl"
    cube_with_cavity().export(str(out))
    print(f"wrote {out}")
