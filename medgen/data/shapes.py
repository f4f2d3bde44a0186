"""Geometric building blocks of the procedural phantoms: normalised grids, smooth random fields, soft masks, tubes.

All coordinates are *normalised*: each array axis spans ``[-1, 1]`` (voxel centres at ``(i + 0.5) / n * 2 - 1``), so
a phantom fills its box whatever the shape (an anisotropic shape stretches the anatomy). Axis 0 runs from the
subject's left to right (``x``, RAS ``R``), axis 1 from posterior to anterior (``y``, ``A``), axis 2 from inferior to
superior (``z``, ``S``), so an identity affine puts the volume in RAS orientation.

Everything is numpy float32 and deterministic given a :class:`numpy.random.Generator`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "check_shape",
    "check_seed",
    "axis_coordinates",
    "Grid",
    "smooth_field",
    "soft_inside",
    "ellipsoid_sdf",
    "rotation_matrix",
    "TubePainter",
]


def check_shape(shape: Sequence[int], minimum: int = 8) -> tuple[int, int, int]:
    """Validate a 3D volume shape.

    Raises:
        TypeError: if ``shape`` is not a sequence of three integers.
        ValueError: if any entry is smaller than ``minimum``.
    """
    if isinstance(shape, (int, np.integer)) or not isinstance(shape, (Sequence, np.ndarray, torch.Size)):
        raise TypeError(f"shape must be a sequence of 3 ints (D, H, W), got {shape!r}.")
    if len(shape) != 3 or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in shape):
        raise TypeError(f"shape must be a sequence of 3 ints (D, H, W), got {tuple(shape)!r}.")
    if min(shape) < minimum:
        raise ValueError(f"shape entries must be >= {minimum}, got {tuple(int(s) for s in shape)}.")
    return int(shape[0]), int(shape[1]), int(shape[2])


def check_seed(seed: int | np.random.Generator) -> np.random.Generator:
    """Return a numpy Generator for an int seed (or the Generator itself).

    Raises:
        TypeError: for anything else.
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}.")
        return np.random.default_rng(int(seed))
    raise TypeError(f"seed must be an int or numpy.random.Generator, got {type(seed).__name__}.")


def axis_coordinates(n: int) -> np.ndarray:
    """Normalised voxel-centre coordinates of an axis of length ``n``: ``(arange(n) + 0.5) / n * 2 - 1``."""
    return ((np.arange(n, dtype=np.float32) + 0.5) / n * 2.0 - 1.0).astype(np.float32)


class Grid:
    """The normalised coordinate grid of a volume, as broadcastable 1D axes plus helpers.

    Args:
        shape: ``(D, H, W)``.
    """

    def __init__(self, shape: Sequence[int]) -> None:
        self.shape = check_shape(shape, minimum=1)
        self.axes = [axis_coordinates(n) for n in self.shape]
        self.x = self.axes[0][:, None, None]
        self.y = self.axes[1][None, :, None]
        self.z = self.axes[2][None, None, :]
        self.voxel = float(2.0 / min(self.shape))  # the largest voxel edge in normalised units

    def full(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Dense ``(x, y, z)`` coordinate arrays of the volume shape."""
        return tuple(np.broadcast_to(a, self.shape).astype(np.float32) for a in (self.x, self.y, self.z))

    def transformed(self, rotation: np.ndarray, centre: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Coordinates ``rotation @ (p - centre)`` of every voxel ``p`` (three dense float32 arrays)."""
        rel = [self.x - centre[0], self.y - centre[1], self.z - centre[2]]
        return tuple(
            (rotation[i, 0] * rel[0] + rotation[i, 1] * rel[1] + rotation[i, 2] * rel[2]).astype(np.float32)
            for i in range(3)
        )


def smooth_field(
    coords: Sequence[np.ndarray], rng: np.random.Generator, correlation: float, extent: float = 1.6
) -> np.ndarray:
    """A smooth zero-mean, unit-variance random field sampled at ``coords``.

    White noise on a coarse lattice over ``[-extent, extent]^3`` (cell size ``correlation / 4``) is Gaussian-smoothed
    and trilinearly interpolated at the (possibly rotated) coordinates, so the field is continuous with
    correlation length about ``correlation`` (normalised units) and independent of the output resolution.

    Args:
        coords: three arrays (broadcastable to each other) of normalised ``x, y, z`` coordinates.
        rng: numpy Generator (consumed).
        correlation: correlation length in normalised units (e.g. ``0.5`` = smooth, ``0.1`` = fine folding).
        extent: half-width of the lattice; coordinates outside it are clamped.

    Returns:
        a float32 array of the broadcast shape of ``coords``.
    """
    from scipy.ndimage import gaussian_filter

    cell = correlation / 4.0
    m = int(np.ceil(2 * extent / cell)) + 1
    lattice = gaussian_filter(rng.standard_normal((m, m, m)), sigma=2.0, mode="wrap")
    lattice = (lattice - lattice.mean()) / (lattice.std() + 1e-12)
    shape = np.broadcast_shapes(*(np.shape(c) for c in coords))
    # grid_sample wants (x, y, z) = (last, middle, first) lattice axes, in [-1, 1] relative to the lattice extent
    grid = np.stack([np.broadcast_to(c, shape) / extent for c in coords[::-1]], axis=-1).astype(np.float32)
    out = F.grid_sample(
        torch.from_numpy(lattice.astype(np.float32))[None, None],
        torch.from_numpy(grid)[None],
        mode="bilinear",
        padding_mode="border",
        align_corners=True,
    )
    return out[0, 0].numpy()


def soft_inside(signed_distance: np.ndarray, width: float) -> np.ndarray:
    """Partial-volume fraction of being inside (``signed_distance < 0``), linear over ``width``.

    Returns:
        float32 array in ``[0, 1]``: 1 deep inside, 0 outside, 0.5 on the surface.
    """
    return np.clip(0.5 - signed_distance / width, 0.0, 1.0).astype(np.float32)


def ellipsoid_sdf(
    coords: Sequence[np.ndarray],
    centre: Sequence[float],
    semi_axes: Sequence[float],
    perturbation: np.ndarray | float = 0.0,
) -> np.ndarray:
    """Approximate signed distance to an axis-aligned ellipsoid (negative inside).

    ``(r - 1) * min(semi_axes)`` with ``r`` the normalised radius divided by ``1 + perturbation`` (a smooth field makes
    the surface bumpy).

    Returns:
        float32 array of the broadcast shape of ``coords``.
    """
    r2 = sum(((c - c0) / a) ** 2 for c, c0, a in zip(coords, centre, semi_axes))
    r = np.sqrt(r2) / (1.0 + perturbation)
    return ((r - 1.0) * min(semi_axes)).astype(np.float32)


def rotation_matrix(angles: Sequence[float]) -> np.ndarray:
    """Rotation ``Rz @ Ry @ Rx`` for angles (radians) about the x, y and z axes."""
    ax, ay, az = angles
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


class TubePainter:
    """Rasterises tubes (poly-lines with a radius per vertex) into a label or fraction volume.

    Only the bounding box of each segment is visited, so thin trees with hundreds of segments stay cheap.

    Args:
        grid: the volume's :class:`Grid`.
        min_radius_voxels: radii are raised to at least this many voxels so thin tubes never vanish at low resolution.
    """

    def __init__(self, grid: Grid, min_radius_voxels: float = 0.7) -> None:
        self.grid = grid
        self.min_radius = min_radius_voxels * grid.voxel

    def distance(self, points: np.ndarray, radii: np.ndarray | float) -> np.ndarray:
        """Signed distance (negative inside) to the union of tubes along ``points`` (K, 3) with ``radii`` (K,).

        Voxels far from every segment get ``+inf``.
        """
        points = np.asarray(points, dtype=np.float64)
        radii = np.broadcast_to(np.maximum(np.asarray(radii, dtype=np.float64), self.min_radius), (len(points),))
        out = np.full(self.grid.shape, np.inf, dtype=np.float32)
        for k in range(len(points) - 1):
            self._segment(out, points[k], points[k + 1], radii[k], radii[k + 1])
        return out

    def _segment(self, out: np.ndarray, p0: np.ndarray, p1: np.ndarray, r0: float, r1: float) -> None:
        margin = max(r0, r1) + 2 * self.grid.voxel
        sl = []
        for axis, coords in enumerate(self.grid.axes):
            lo, hi = min(p0[axis], p1[axis]) - margin, max(p0[axis], p1[axis]) + margin
            i0, i1 = np.searchsorted(coords, lo), np.searchsorted(coords, hi)
            if i0 >= i1:
                return
            sl.append(slice(i0, i1))
        x = self.grid.axes[0][sl[0]][:, None, None] - p0[0]
        y = self.grid.axes[1][sl[1]][None, :, None] - p0[1]
        z = self.grid.axes[2][sl[2]][None, None, :] - p0[2]
        d = p1 - p0
        length2 = float(d @ d) + 1e-12
        t = np.clip((x * d[0] + y * d[1] + z * d[2]) / length2, 0.0, 1.0)
        dist = np.sqrt((x - t * d[0]) ** 2 + (y - t * d[1]) ** 2 + (z - t * d[2]) ** 2) - (r0 + t * (r1 - r0))
        region = out[sl[0], sl[1], sl[2]]
        np.minimum(region, dist.astype(np.float32), out=region)
