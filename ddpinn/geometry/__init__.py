from ddpinn.geometry.box import Box, Face, sample_box, sample_face, grid_points
from ddpinn.geometry.shapes import EmptyRegion, Shape
from ddpinn.geometry.primitives import (AlignedBox, Ball, Cuboid, Cylinder, Disk, Interval,
                                        Polygon, Rectangle)
from ddpinn.geometry.csg import Difference, Intersection, Union
from ddpinn.geometry.spec import SHAPE_TYPES, shape_from_spec


def __getattr__(name):
    # StlShape needs trimesh: imported on first use, not with the package.
    if name == "StlShape":
        from ddpinn.geometry.mesh import StlShape
        return StlShape
    raise AttributeError(f"module 'ddpinn.geometry' has no attribute {name!r}")


__all__ = ["Box", "Face", "sample_box", "sample_face", "grid_points", "EmptyRegion", "Shape",
           "AlignedBox", "Interval", "Rectangle", "Cuboid", "Disk", "Ball", "Polygon",
           "Cylinder", "Union", "Difference", "Intersection", "StlShape", "SHAPE_TYPES",
           "shape_from_spec"]
