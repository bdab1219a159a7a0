from ddpinn.geometry.box import Box, Face, sample_box, sample_face, grid_points

__all__ = ["Box", "Face", "sample_box", "sample_face", "grid_points"]
