"""Procedural coronary CT angiography (CTA) sample: a 9-class heart label map and a matching contrast CT image.

Stands in for the ImageCAS + TotalSegmentator label maps that the CTCA semantic diffusion model is conditioned on.
Deterministic in ``(shape, seed)``; any (also non-cubic) shape; axes as in :mod:`medgen.data.shapes` (axis 0
left -> right, 1 posterior -> anterior, 2 inferior -> superior; the heart fills the box like a cardiac field of view).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.ndimage import gaussian_filter

from medgen.data.phantoms import normalize_hu
from medgen.data.shapes import Grid, TubePainter, check_seed, check_shape, ellipsoid_sdf, smooth_field

__all__ = ["CTA_CLASSES", "CTA_HU", "coronary_cta_phantom"]

CTA_CLASSES: dict[int, str] = {
    0: "background",
    1: "left ventricle (blood pool)",
    2: "right ventricle (blood pool)",
    3: "left atrium",
    4: "right atrium",
    5: "myocardium (left ventricular wall, septum and right ventricular free wall)",
    6: "aorta (root, ascending, arch, descending)",
    7: "pulmonary artery (trunk and left/right branches)",
    8: "coronary arteries (left main, LAD, LCx, RCA with diagonal/marginal branches)",
}
"""Label table of :func:`coronary_cta_phantom` (the CTCA SDM uses 9 classes)."""

CTA_HU: dict[int, float] = {1: 450.0, 2: 300.0, 3: 430.0, 4: 280.0, 5: 110.0, 6: 470.0, 7: 320.0, 8: 430.0}
"""Mean Hounsfield units per class in the contrast image (arterial phase: left heart brighter than right)."""


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


class _HeartFrame:
    """Long-axis frame of the ventricles: ``e1`` base -> apex, ``e2`` towards the left ventricle, ``e3 = e1 x e2``."""

    def __init__(self, long_axis: np.ndarray, centre: np.ndarray) -> None:
        self.e1 = _unit(long_axis)
        towards_lv = np.array([-1.0, -1.0, 0.0])  # the LV lies left-posterior of the RV
        self.e2 = _unit(towards_lv - (towards_lv @ self.e1) * self.e1)
        self.e3 = np.cross(self.e1, self.e2)
        self.centre = np.asarray(centre, dtype=np.float64)

    def point(self, l: float, q2: float, q3: float) -> np.ndarray:
        return self.centre + l * self.e1 + q2 * self.e2 + q3 * self.e3

    def local(self, grid: Grid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rotation = np.stack([self.e1, self.e2, self.e3])
        return grid.transformed(rotation, self.centre)


def _surface_path(
    frame: _HeartFrame, axes: np.ndarray, l_values: np.ndarray, angles: np.ndarray, offset: float
) -> np.ndarray:
    """Points on the epicardial ellipsoid (semi-axes ``axes`` in the frame) at long-axis ``l`` and angle around it."""
    points = []
    for l, theta in zip(l_values, angles):
        c, s = np.cos(theta), np.sin(theta)
        rho = np.sqrt(max(1.0 - (l / axes[0]) ** 2, 0.0)) / np.sqrt((c / axes[1]) ** 2 + (s / axes[2]) ** 2)
        points.append(frame.point(l, (rho + offset) * c, (rho + offset) * s))
    return np.array(points)


def coronary_cta_phantom(
    shape: Sequence[int] = (64, 64, 64),
    seed: int | np.random.Generator = 0,
    noise_std: float = 25.0,
) -> dict[str, np.ndarray]:
    """A coronary CTA label map (9 classes, :data:`CTA_CLASSES`) with a matching contrast-enhanced CT image.

    Anatomy (heart frame with a seeded long-axis tilt): left ventricle cavity inside an ellipsoidal myocardium, a
    crescent right ventricle with a thin free wall wrapped around it, left and right atria behind the base, the aorta
    (root, ascending, arch, descending) and the pulmonary trunk with its branches as tubes, and a coronary tree on the
    epicardial surface: left main from the left aortic sinus splitting into LAD (anterior interventricular groove to
    the apex) and LCx (left atrioventricular groove), RCA from the right sinus along the right atrioventricular groove
    into the posterior descending artery, plus 2-4 diagonal and 1-3 marginal branches. Coronary radii taper from
    about 1.5 % to 0.8 % of the box (at least 0.7 voxel, so they stay visible at 64^3).

    The image (HU) puts :data:`CTA_HU` in each class over a thoracic background (air -1000, body soft tissue 40,
    epicardial fat -90, lungs -850, spine 400), blurs it with a 0.7-voxel Gaussian (scanner PSF) and adds Gaussian
    noise of ``noise_std`` HU. ``image`` is the per-volume min-max normalisation of the HU image to ``[-1, 1]``, as the
    CTCA SDM preprocessing does.

    Args:
        shape: ``(D, H, W)`` voxels, each >= 16.
        seed: int seed or a numpy Generator. Each seed changes the heart orientation, chamber sizes, vessel paths and
            the number and position of coronary side branches.
        noise_std: image noise in HU.

    Returns:
        dict with ``"label"`` (uint8, values 0-8), ``"image_hu"`` (float32 HU) and ``"image"`` (float32 in [-1, 1]), all
        of ``shape``.

    Raises:
        TypeError, ValueError: for a bad ``shape``, ``seed`` or negative ``noise_std``.
    """
    shape = check_shape(shape, minimum=16)
    rng = check_seed(seed)
    if noise_std < 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}.")
    grid = Grid(shape)
    tubes = TubePainter(grid, min_radius_voxels=0.7)
    scale = 1.6 * (1.0 + 0.06 * rng.standard_normal())  # the heart fills most of a cardiac field of view
    # the apex points to the subject's left (-x), anterior (+y) and inferior (-z)
    long_axis = np.array([-0.55, 0.6, -0.5]) + 0.08 * rng.standard_normal(3)
    frame = _HeartFrame(long_axis, np.array([0.0, 0.12, -0.12]) + 0.03 * rng.standard_normal(3))
    local = frame.local(grid)
    l = local[0]
    label = np.zeros(shape, dtype=np.uint8)

    l_base = -0.2 * scale
    # atria beyond the base (posterior/superior): LA to the left-posterior, RA to the right
    base = frame.point(l_base, 0.0, 0.0)
    la_c = base + np.array([-0.06, -0.2, 0.1]) * scale
    ra_c = base + np.array([0.2, -0.04, 0.06]) * scale
    la = ellipsoid_sdf(grid.full(), la_c, np.array([0.15, 0.11, 0.11]) * scale * (1 + 0.05 * rng.standard_normal(3)))
    ra = ellipsoid_sdf(grid.full(), ra_c, np.array([0.12, 0.12, 0.15]) * scale * (1 + 0.05 * rng.standard_normal(3)))
    label[la < 0] = 3
    label[ra < 0] = 4

    # aorta: root just beyond the base, ascending (right/anterior/up), arch (posterior/left), descending
    root = frame.point(l_base - 0.08 * scale, -0.02 * scale, 0.0) + np.array([0.0, 0.02, 0.04]) * scale
    a1 = root + np.array([0.06, 0.04, 0.28]) * scale
    a2 = a1 + np.array([-0.08, -0.16, 0.12]) * scale
    a3 = a2 + np.array([-0.2, -0.24, -0.02]) * scale
    a4 = a3 + np.array([-0.02, 0.02, -0.3]) * scale
    a5 = np.array([a4[0], a4[1], -1.2])
    aorta_pts = np.array([root, a1, a2, a3, a4, a5])
    aorta_r = np.array([0.075, 0.07, 0.065, 0.06, 0.055, 0.055]) * scale
    label[tubes.distance(aorta_pts, aorta_r) < 0] = 6

    # pulmonary trunk from the right ventricular outflow (anterior-left of the root), up and back, then branching
    p0 = root + np.array([-0.1, 0.16, -0.02]) * scale
    p1 = p0 + np.array([-0.05, -0.02, 0.2]) * scale
    p2 = p1 + np.array([0.0, -0.1, 0.05]) * scale
    pa = np.minimum.reduce(
        [
            tubes.distance(np.array([p0, p1, p2]), 0.06 * scale),
            tubes.distance(np.array([p2, p2 + np.array([-0.3, -0.08, -0.02]) * scale]), 0.045 * scale),
            tubes.distance(p2 + np.array([[0, 0, 0], [0.18, -0.02, 0], [0.38, -0.08, -0.06]]) * scale, 0.045 * scale),
        ]
    )
    label[pa < 0] = 7

    # ventricles: LV myocardium ellipsoid (towards +e2), LV cavity inside, RV crescent on the -e2 side
    ventricles = l > l_base
    lv_axes = np.array([0.34, 0.2, 0.2]) * scale * (1 + 0.04 * rng.standard_normal(3))
    wall = (0.045 + 0.015 * rng.random()) * scale
    lv_outer = ellipsoid_sdf(local, (0.02 * scale, 0.07 * scale, 0.0), lv_axes)
    lv_cavity = ellipsoid_sdf(local, (0.0, 0.07 * scale, 0.0), lv_axes - np.array([wall * 1.3, wall, wall]))
    rv_axes = np.array([0.3, 0.22, 0.25]) * scale * (1 + 0.05 * rng.standard_normal(3))
    rv_outer = ellipsoid_sdf(local, (-0.01, -0.09 * scale, 0.0), rv_axes)
    rv_cavity = ellipsoid_sdf(local, (-0.02, -0.09 * scale, 0.0), rv_axes - 0.022 * scale)
    label[ventricles & (rv_outer < 0)] = 5
    label[ventricles & (rv_cavity < 0)] = 2
    label[ventricles & (lv_outer < 0)] = 5
    label[ventricles & (lv_cavity < 0)] = 1

    # coronary tree on the epicardial envelope (an ellipsoid around both ventricles, in the frame)
    env_c = np.array([0.0, -0.01 * scale, 0.0])
    env_axes = np.array([0.37, 0.32, 0.27]) * scale
    env_frame = _HeartFrame(frame.e1, frame.point(*env_c))
    r_main, r_end = 0.015 * scale, 0.008 * scale
    # angles around the long axis: 0 = +e2 (LV free wall); the anterior interventricular groove is the side of +-e3
    # that faces anterior; ``toward_lv`` is the sense of rotation from it towards the LV free wall
    theta_ant = np.pi / 2 if frame.e3[1] > 0 else -np.pi / 2
    theta_post = theta_ant + np.pi
    toward_lv = -1.0 if theta_ant > 0 else 1.0
    groove_l = l_base + 0.03

    def wander(count: int) -> np.ndarray:
        return 0.12 * np.cumsum(rng.normal(0.0, 0.25, size=count)) / np.sqrt(count)

    def vessel(ls: np.ndarray, thetas: np.ndarray, r0: float, r1: float) -> np.ndarray:
        pts = _surface_path(env_frame, env_axes, ls - env_c[0], thetas, offset=0.4 * r0)
        return tubes.distance(pts, np.linspace(r0, r1, len(pts)))

    n = 24
    lad_l = np.linspace(groove_l, env_axes[0] * 0.95, n)
    lad_t = theta_ant + 0.25 * toward_lv + wander(n)
    lcx_t = np.linspace(theta_ant + 0.4 * toward_lv, theta_post - 0.35 * toward_lv, n) + wander(n) * 0.5
    lcx_l = groove_l + 0.02 * np.sin(np.linspace(0, np.pi, n))
    rca_t = np.linspace(theta_ant - 0.3 * toward_lv, theta_ant - 0.3 * toward_lv - (np.pi - 0.2) * toward_lv, n)
    rca_l = groove_l + 0.02 * np.sin(np.linspace(0, np.pi, n))
    pda_l = np.linspace(groove_l + 0.02, env_axes[0] * 0.7, n // 2)
    pda_t = np.full(n // 2, rca_t[-1]) + wander(n // 2)
    distances = [
        vessel(lad_l, lad_t, r_main, r_end),
        vessel(lcx_l, lcx_t, r_main, r_end),
        vessel(rca_l, rca_t, r_main, r_end * 1.2),
        vessel(pda_l, pda_t, r_end * 1.3, r_end),
    ]
    # ostia: left main from the left sinus to the LAD/LCx bifurcation, RCA from the right sinus to its start
    lad_start = _surface_path(env_frame, env_axes, lad_l[:1] - env_c[0], lad_t[:1], 0.4 * r_main)[0]
    rca_start = _surface_path(env_frame, env_axes, rca_l[:1] - env_c[0], rca_t[:1], 0.4 * r_main)[0]
    left_sinus = root + 0.07 * scale * _unit(lad_start - root)
    right_sinus = root + 0.07 * scale * _unit(rca_start - root)
    distances.append(tubes.distance(np.array([left_sinus, lad_start]), r_main * 1.2))
    distances.append(tubes.distance(np.array([right_sinus, rca_start]), r_main))
    # side branches: diagonals off the LAD towards the LV free wall, marginals off the LCx and RCA towards the apex
    m = 10
    for k in rng.choice(np.arange(4, n - 6), size=rng.integers(2, 5), replace=False):
        ls = np.linspace(lad_l[k], min(lad_l[k] + 0.25, env_axes[0] * 0.9), m)
        ts = lad_t[k] + np.linspace(0.0, 0.9 * toward_lv, m) + wander(m)
        distances.append(vessel(ls, ts, r_end * 1.1, r_end * 0.8))
    for path_l, path_t in ((lcx_l, lcx_t), (rca_l, rca_t)):
        for k in rng.choice(np.arange(4, n - 2), size=rng.integers(1, 3), replace=False):
            ls = np.linspace(path_l[k], env_axes[0] * 0.6, m)
            ts = np.full(m, path_t[k]) + wander(m)
            distances.append(vessel(ls, ts, r_end * 1.1, r_end * 0.8))
    label[np.minimum.reduce(distances) < 0] = 8

    # intensity image: thoracic background, class means, PSF blur, noise
    x, y, z = grid.full()
    hu = np.full(shape, -1000.0, dtype=np.float32)
    body = (x / 1.05) ** 2 + ((y + 0.05) / 0.98) ** 2 < 1.0
    hu[body] = 40.0
    lungs = (((np.abs(x) - 0.62) / 0.36) ** 2 + ((y + 0.15) / 0.62) ** 2 < 1.0) & body
    hu[lungs] = -850.0 + 30.0 * smooth_field((x, y, z), rng, correlation=0.15)[lungs]
    envelope = ellipsoid_sdf(local, env_c, env_axes + 0.06)
    hu[envelope < 0] = -90.0
    spine = (x / 0.12) ** 2 + ((y + 0.86) / 0.1) ** 2 < 1.0
    hu[spine] = 400.0
    for cls, value in CTA_HU.items():
        hu[label == cls] = value
    hu = gaussian_filter(hu, sigma=0.7)
    if noise_std > 0:
        hu = hu + noise_std * rng.standard_normal(shape).astype(np.float32)
    hu = hu.astype(np.float32)
    lo, hi = float(hu.min()), float(hu.max())
    image = normalize_hu(hu, lo, hi if hi > lo else lo + 1.0, out_range=(-1.0, 1.0))
    return {"label": label, "image_hu": hu, "image": image}
