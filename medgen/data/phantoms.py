"""Procedural 3D sample data: a T1-weighted brain MRI phantom and a body CT phantom (coronary CTA: ``coronary.py``).

The phantoms are deterministic functions of ``(shape, seed)`` (a numpy :class:`~numpy.random.Generator` drives all
randomness), work for any (also non-cubic) shape, and differ in anatomy between seeds (shape perturbations, ventricle
size, cortical folding, organ sizes), so they can stand in for train/test subjects in demos and tests.

Outputs are **numpy float32 arrays** of shape ``shape`` without a channel axis (use ``torch.from_numpy(v)[None]`` for
a channel-first tensor). Axis 0 runs left -> right, axis 1 posterior -> anterior, axis 2 inferior -> superior (RAS
with an identity affine); the anatomy is scaled to fill the box (see :mod:`medgen.data.shapes`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
from scipy.ndimage import gaussian_filter

from medgen.data.shapes import (
    Grid,
    check_seed,
    check_shape,
    ellipsoid_sdf,
    rotation_matrix,
    smooth_field,
    soft_inside,
)

__all__ = ["BRAIN_LABELS", "BODY_CT_LABELS", "brain_mri_phantom", "body_ct_phantom", "normalize_hu"]

BRAIN_LABELS: dict[int, str] = {
    0: "background",
    1: "scalp and orbital fat",
    2: "skull",
    3: "cerebrospinal fluid (sulci, cisterns, ventricles, eyes)",
    4: "grey matter (cortex, cerebellar cortex)",
    5: "white matter (and brainstem)",
    6: "deep grey nuclei (thalamus, caudate, putamen)",
}
"""Tissue classes of :func:`brain_mri_phantom` (``return_labels=True``)."""

BODY_CT_LABELS: dict[int, str] = {
    0: "air",
    1: "fat",
    2: "muscle and soft tissue",
    3: "lung",
    4: "liver",
    5: "spleen",
    6: "kidney",
    7: "heart and great vessels",
    8: "bone",
    9: "bowel and stomach (with gas)",
}
"""Tissue classes of :func:`body_ct_phantom` (``return_labels=True``)."""


class _Painter:
    """Back-to-front compositing of tissue fractions into an image and a hard label map.

    With ``contrasts`` (name -> {role: value}) the same fractions are also composited into one more image per
    contrast, each layer taking its contrast's value for the layer's ``role``: the same anatomy in other contrasts.
    """

    def __init__(
        self,
        shape: tuple[int, int, int],
        background: float,
        contrasts: Mapping[str, Mapping[str, float]] | None = None,
    ) -> None:
        self.image = np.full(shape, background, dtype=np.float32)
        self.labels = np.zeros(shape, dtype=np.uint8)
        self.contrasts = dict(contrasts or {})
        self.images = {name: np.full(shape, table["background"], np.float32) for name, table in self.contrasts.items()}

    def paint(self, fraction: np.ndarray, value: float | np.ndarray, label: int, role: str | None = None) -> None:
        fraction = np.asarray(fraction, dtype=np.float32)
        self.image += fraction * (value - self.image)
        self.labels[fraction > 0.5] = label
        for name, image in self.images.items():
            if role is None:
                raise ValueError(f"a layer without a role cannot be painted in contrast {name!r}.")
            image += fraction * (self.contrasts[name][role] - image)


def _sheet_fraction(
    distance: np.ndarray, depth: np.ndarray, half_width: float, max_depth: float, eps: float
) -> np.ndarray:
    """Fraction inside a sheet (``|sheet distance| < half_width``) that reaches ``max_depth`` below a surface."""
    return soft_inside(distance - half_width, eps) * soft_inside(depth - max_depth, eps)


def brain_mri_phantom(
    shape: Sequence[int] = (64, 64, 64),
    seed: int | np.random.Generator = 0,
    noise_std: float = 0.012,
    bias_strength: float = 0.08,
    return_labels: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """A T1-weighted brain MRI-like volume in ``[0, 1]``.

    Head ellipsoid with scalp, skull (dark tables, brighter diploe), CSF, a folded grey-matter cortex ribbon (sulci are
    the zero sets of a smooth random field, lined with grey matter, reaching ~0.2 of the head radius inwards), an
    interhemispheric fissure, white matter, lateral and third ventricles, deep grey nuclei, cerebellum with folia,
    brainstem and eyes; then a smooth multiplicative bias field, fine tissue texture and Rician noise. T1 contrast:
    WM (~0.78) > deep GM (~0.62) > GM (~0.5) > CSF (~0.12); scalp fat bright, skull dark.

    Each seed changes head and brain size and shape, a small head rotation/shift, ventricle size (x0.6-1.7), cortical
    thickness and folding pattern, tissue intensities and the bias field.

    Args:
        shape: ``(D, H, W)`` voxels, each >= 8 (axis 0 left-right, 1 posterior-anterior, 2 inferior-superior).
        seed: int seed or a numpy Generator.
        noise_std: standard deviation of the complex Gaussian noise (Rician magnitude), intensity units.
        bias_strength: standard deviation of the log bias field.
        return_labels: also return the hard tissue label map (:data:`BRAIN_LABELS`).

    Returns:
        float32 image of ``shape`` in ``[0, 1]``; with ``return_labels`` a tuple ``(image, labels uint8)``.

    Raises:
        TypeError, ValueError: for a bad ``shape``, ``seed`` or negative noise/bias.
    """
    shape = check_shape(shape)
    rng = check_seed(seed)
    if noise_std < 0 or bias_strength < 0:
        raise ValueError(f"noise_std and bias_strength must be >= 0, got {noise_std} and {bias_strength}.")
    image, labels, _ = _brain_phantom(shape, rng, noise_std, bias_strength)
    return (image, labels) if return_labels else image


BrainLesionPainter = Callable[["_Painter", tuple[np.ndarray, np.ndarray, np.ndarray], float, np.ndarray], None]
"""``paint(painter, coords, eps, brain_fraction)``: paints extra layers (e.g. a lesion) into a brain phantom after
its anatomy and before texture, bias field and noise."""


def _brain_phantom(
    shape: tuple[int, int, int],
    rng: np.random.Generator,
    noise_std: float,
    bias_strength: float,
    contrasts: Mapping[str, Mapping[str, float]] | None = None,
    extra_rng: np.random.Generator | None = None,
    lesion: BrainLesionPainter | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The body of :func:`brain_mri_phantom`: the T1 image, the tissue labels and the same anatomy in ``contrasts``.

    ``rng`` draws exactly what :func:`brain_mri_phantom` draws (so the T1 image of a seed is the same whatever
    ``contrasts``/``lesion`` are); the noise of the extra contrasts comes from ``extra_rng``. Each contrast table
    maps every layer role (``"background"``, ``"scalp"``, ``"skull"``, ``"diploe"``, ``"csf"``, ``"face"``,
    ``"gm"``, ``"folia"``, ``"wm"``, ``"brainstem"``, ``"deep"``, ``"orbital_fat"``, ``"vitreous"`` and those of
    ``lesion``) to an intensity.
    """
    grid = Grid(shape)
    eps = grid.voxel

    rot = rotation_matrix(rng.normal(0.0, np.deg2rad(3.0), size=3))
    coords = grid.transformed(rot, rng.normal(0.0, 0.02, size=3))
    x, y, z = coords
    size = 1.0 + 0.04 * rng.standard_normal()
    shape_noise = 0.035 * smooth_field(coords, rng, correlation=0.6)

    head_axes = np.array([0.78, 0.92, 0.86]) * size
    head = ellipsoid_sdf(coords, (0.0, 0.0, -0.04), head_axes, shape_noise * 0.5)
    scalp = 0.05 + 0.01 * rng.random()
    skull = 0.055 + 0.01 * rng.random()
    skull_outer = head + scalp
    skull_base = -0.5 * size  # below it: face/neck soft tissue instead of the cranial cavity
    intracranial = np.maximum(head + scalp + skull, skull_base - z)
    below_base = soft_inside(skull_outer, eps) * soft_inside(z - (skull_base - skull), eps)
    cerebrum_axes = np.array([0.64, 0.79, 0.62]) * size * (1.0 + 0.03 * rng.standard_normal(3))
    cerebrum = ellipsoid_sdf(coords, (0.0, 0.0, 0.04), cerebrum_axes, shape_noise)
    cerebrum = np.maximum(cerebrum, intracranial + 0.02)
    depth = -cerebrum  # distance below the cortical surface

    # cortical folding: sulci are sheets where a smooth field crosses zero; |f| / |grad f| ~ distance to the sheet
    fold_corr = 0.11 + 0.03 * rng.random()
    fold = smooth_field(coords, rng, correlation=fold_corr)
    sulcus_distance = np.abs(fold) * (fold_corr / 2.2)
    thickness = 0.055 + 0.015 * rng.random()
    sulcus_depth = 0.17 + 0.05 * rng.random()
    fissure_distance = np.abs(x - 0.015 * smooth_field(coords, rng, correlation=0.5))

    v_scale = rng.uniform(0.6, 1.7)
    painter = _Painter(shape, 0.0, contrasts)
    tissue = {
        "scalp": 0.8 + 0.05 * rng.standard_normal(),
        "skull": 0.07,
        "diploe": 0.32,
        "csf": 0.12,
        "gm": 0.5 + 0.02 * rng.standard_normal(),
        "wm": 0.78 + 0.02 * rng.standard_normal(),
        "deep": 0.62,
    }
    painter.paint(soft_inside(head, eps), tissue["scalp"], 1, "scalp")
    painter.paint(soft_inside(skull_outer, eps), tissue["skull"], 2, "skull")
    diploe = soft_inside(skull_outer + 0.3 * skull, eps) * soft_inside(-(intracranial - 0.3 * skull), eps)
    painter.paint(diploe, tissue["diploe"], 2, "diploe")
    painter.paint(soft_inside(intracranial, eps), tissue["csf"], 3, "csf")
    painter.paint(below_base, 0.42, 1, "face")

    # cerebellum (folia) and brainstem, below/behind the cerebrum
    cerebellum = np.maximum(
        ellipsoid_sdf(coords, (0.0, -0.45 * size, -0.32 * size), np.array([0.42, 0.26, 0.19]) * size, shape_noise),
        intracranial + 0.02,
    )
    folia = np.abs(np.sin((z + 0.04 * smooth_field(coords, rng, correlation=0.3)) * (np.pi / 0.07)))
    painter.paint(soft_inside(cerebellum, eps), tissue["gm"], 4, "gm")
    painter.paint(soft_inside(cerebellum, eps) * soft_inside(folia - 0.25, 0.4), tissue["csf"] + 0.1, 3, "folia")
    cb_core = ellipsoid_sdf(coords, (0.0, -0.41 * size, -0.31 * size), np.array([0.24, 0.12, 0.08]) * size)
    painter.paint(soft_inside(cb_core, eps), tissue["wm"], 5, "wm")
    stem = np.sqrt((x / 0.1) ** 2 + ((y + 0.16 * size) / 0.085) ** 2) - 1.0
    stem = np.maximum(np.maximum(stem * 0.085, z - 0.0), intracranial + 0.01)
    painter.paint(soft_inside(stem, eps), 0.7, 5, "brainstem")

    # cerebrum: cortex, white matter with gyral cores, sulci and the interhemispheric fissure
    brain = soft_inside(cerebrum, eps)
    painter.paint(brain, tissue["gm"], 4, "gm")
    # within a cortical thickness of a sulcus or the fissure: grey matter, not white matter
    near_sulcus = _sheet_fraction(sulcus_distance, depth, 0.012 + thickness, sulcus_depth + thickness, eps)
    near_fissure = _sheet_fraction(fissure_distance, depth, 0.012 + thickness, 0.45 + thickness, eps)
    white = brain * soft_inside(thickness - depth, eps) * (1.0 - near_sulcus) * (1.0 - near_fissure)
    painter.paint(white, tissue["wm"], 5, "wm")
    sulci = brain * np.maximum(
        _sheet_fraction(sulcus_distance, depth, 0.012, sulcus_depth, eps),
        _sheet_fraction(fissure_distance, depth, 0.012, 0.45, eps),
    )
    painter.paint(sulci, tissue["csf"], 3, "csf")

    # deep grey nuclei (symmetric pairs)
    ax = np.abs(x)
    deep = np.minimum.reduce(
        [
            ellipsoid_sdf((ax, y, z), (0.09, -0.1, 0.02), (0.075, 0.11, 0.075)),  # thalamus
            ellipsoid_sdf((ax, y, z), (0.13 + 0.03 * (v_scale - 1), 0.2, 0.12), (0.045, 0.1, 0.07)),  # caudate
            ellipsoid_sdf((ax, y, z), (0.23, 0.05, 0.04), (0.045, 0.14, 0.09)),  # putamen
        ]
    )
    painter.paint(soft_inside(deep, eps), tissue["deep"], 6, "deep")

    # ventricles: bent lateral ventricles (frontal/occipital horns dip down) and a thin third ventricle
    bend = z - 0.16 + 0.9 * (y - 0.02) ** 2
    lateral = ellipsoid_sdf((ax, y, bend), (0.07 + 0.02 * v_scale, 0.0, 0.0), (0.05 * v_scale, 0.34, 0.05 * v_scale))
    third = ellipsoid_sdf((x, y, z), (0.0, -0.05, 0.02), (0.012 * v_scale, 0.14, 0.09))
    painter.paint(soft_inside(np.minimum(lateral, third), eps), tissue["csf"], 3, "csf")

    # eyes: orbital fat with a vitreous globe, outside the brain
    eyes = ellipsoid_sdf((ax, y, z), (0.27 * size, 0.7 * size, -0.42 * size), (0.12, 0.12, 0.1))
    globe = ellipsoid_sdf((ax, y, z), (0.27 * size, 0.74 * size, -0.42 * size), (0.085, 0.085, 0.085))
    outside_brain = 1.0 - soft_inside(intracranial, eps)
    painter.paint(soft_inside(eyes, eps) * outside_brain * soft_inside(head, eps), 0.85, 1, "orbital_fat")
    painter.paint(soft_inside(globe, eps) * outside_brain * soft_inside(head, eps), 0.1, 3, "vitreous")

    if lesion is not None:
        lesion(painter, coords, eps, brain)

    # texture and bias field are properties of the anatomy and the coil: shared by every contrast
    texture = gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma=0.8)
    modulation = 1.0 + 0.05 * texture * (painter.labels >= 4)
    bias = np.exp(bias_strength * smooth_field(grid.full(), rng, correlation=1.0)).astype(np.float32)

    def finish(image: np.ndarray, noise_rng: np.random.Generator) -> np.ndarray:
        image = image * modulation
        image *= bias
        if noise_std > 0:
            real = image + noise_std * noise_rng.standard_normal(shape).astype(np.float32)
            imag = noise_std * noise_rng.standard_normal(shape).astype(np.float32)
            image = np.sqrt(real**2 + imag**2)
        return np.clip(image, 0.0, 1.0).astype(np.float32)

    image = finish(painter.image, rng)
    others = {name: finish(other, extra_rng or rng) for name, other in painter.images.items()}
    return image, painter.labels, others




def body_ct_phantom(
    shape: Sequence[int] = (64, 64, 64),
    seed: int | np.random.Generator = 0,
    noise_std: float = 12.0,
    return_labels: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """A body (lower thorax + abdomen) CT-like volume in Hounsfield units.

    Elliptic body with skin/subcutaneous fat (~-100 HU) and a muscle wall (~50), lungs (~-850) with branching vessels
    (~40) above a domed diaphragm, heart and descending aorta (~45), liver (~60) with darker vessels, spleen (~48),
    kidneys (~32), stomach/bowel with fluid and gas pockets, visceral fat, and bone (~700+): vertebral bodies with a
    cortical shell (~1200) around cancellous bone (~350) and discs (~80), posterior elements, ribs and sternum. Air
    outside is -1000. Gaussian noise of ``noise_std`` HU and a fine texture are added.

    Each seed changes body size and fat thickness, diaphragm height, organ sizes and positions, vessel and bowel
    patterns, and rib phase.

    Args:
        shape: ``(D, H, W)`` voxels, each >= 8 (axis 0 left-right, 1 posterior-anterior, 2 inferior-superior).
        seed: int seed or a numpy Generator.
        noise_std: Gaussian noise standard deviation in HU.
        return_labels: also return the hard tissue label map (:data:`BODY_CT_LABELS`).

    Returns:
        float32 volume in HU (about ``[-1050, 1300]``); with ``return_labels`` a tuple ``(hu, labels uint8)``.
        Use :func:`normalize_hu` for ``[0, 1]``.

    Raises:
        TypeError, ValueError: for a bad ``shape``, ``seed`` or negative ``noise_std``.
    """
    shape = check_shape(shape)
    rng = check_seed(seed)
    if noise_std < 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}.")
    grid = Grid(shape)
    eps = grid.voxel
    x, y, z = grid.full()
    coords = (x, y, z)
    painter = _Painter(shape, -1000.0)

    # body outline: elliptic cylinder, slowly varying along z
    size = 1.0 + 0.05 * rng.standard_normal()
    wobble = 1.0 + 0.03 * smooth_field(coords, rng, correlation=0.8)
    bx, by, bcy = 0.86 * size, 0.6 * size, -0.05
    body_r = np.sqrt((x / bx) ** 2 + ((y - bcy) / by) ** 2) / wobble
    body = (body_r - 1.0) * by
    fat_t = 0.05 + 0.07 * rng.random()
    painter.paint(soft_inside(body, eps), -100.0, 1)
    painter.paint(soft_inside(body + fat_t, eps), 50.0, 2)
    painter.paint(soft_inside(body + fat_t + 0.05, eps), -90.0, 1)  # visceral fat fills the cavity first

    dome = 0.075 * rng.standard_normal()  # diaphragm height at its lowest (body wall)
    diaphragm = dome + 0.25 * (1.0 - (x / bx) ** 2 - ((y - bcy) / by) ** 2)
    dome = float(dome + 0.15)  # a typical height, where the upper abdominal organs sit
    above = soft_inside(diaphragm - z, eps)  # 1 above the diaphragm dome
    below = 1.0 - above
    cavity = soft_inside(body + fat_t + 0.05, eps)

    # thorax: lungs with vessels, heart, aorta
    lung_w = 0.31 + 0.03 * rng.random()
    lungs = ellipsoid_sdf((np.abs(x), y, z), (0.4, bcy + 0.02, 1.2), (lung_w, 0.43, 1.5))
    lung_frac = soft_inside(lungs, eps) * above * cavity
    painter.paint(lung_frac, -850.0, 3)
    f1 = smooth_field(coords, rng, correlation=0.22)
    f2 = smooth_field(coords, rng, correlation=0.22)
    hilum = np.sqrt((np.abs(x) - 0.15) ** 2 + y**2 + (z - diaphragm - 0.35) ** 2)
    vessel_w = np.clip(0.3 * (1.0 - hilum), 0.08, None)
    vessels = soft_inside(np.maximum(np.abs(f1), np.abs(f2)) - vessel_w, 0.06) * lung_frac
    painter.paint(vessels, 40.0, 2)
    heart_c = (-0.12 + 0.04 * rng.standard_normal(), 0.12, dome + 0.22)
    heart = ellipsoid_sdf(coords, heart_c, (0.3, 0.24, 0.22) * np.array([size, size, 1.0]))
    painter.paint(soft_inside(heart, eps) * cavity * soft_inside(-(z - diaphragm + 0.05), eps), 45.0, 7)

    # abdomen: liver (right = +x), spleen, kidneys, stomach and bowel
    organ_scale = 1.0 + 0.08 * rng.standard_normal(4)
    liver = ellipsoid_sdf(coords, (0.3, 0.02, dome - 0.2), np.array([0.42, 0.4, 0.35]) * organ_scale[0])
    liver_frac = soft_inside(liver, eps) * below * cavity
    painter.paint(liver_frac, 60.0, 4)
    hepatic = soft_inside(np.maximum(np.abs(f1), np.abs(f2)) - 0.08, 0.06) * liver_frac
    painter.paint(hepatic, 38.0, 4)
    spleen = ellipsoid_sdf(coords, (-0.5, -0.18, dome - 0.15), np.array([0.13, 0.2, 0.17]) * organ_scale[1])
    painter.paint(soft_inside(spleen, eps) * below * cavity, 48.0, 5)
    kidney_z = dome - 0.5 - 0.1 * rng.random()
    kidneys = ellipsoid_sdf((np.abs(x), y, z), (0.32, -0.32, kidney_z), np.array([0.1, 0.12, 0.22]) * organ_scale[2])
    painter.paint(soft_inside(kidneys, eps) * below * cavity, 32.0, 6)
    bowel_field = smooth_field(coords, rng, correlation=0.35)
    gas_field = smooth_field(coords, rng, correlation=0.2)
    bowel_region = below * cavity * soft_inside(z - (dome - 0.45), 0.1)
    bowel_region = bowel_region * ~np.isin(painter.labels, (4, 5, 6))
    loops = soft_inside(0.3 - bowel_field, 0.3) * bowel_region * soft_inside(-(y + 0.15), eps)
    painter.paint(loops, 30.0, 9)
    painter.paint(loops * soft_inside(0.6 - gas_field, 0.3), -950.0, 9)
    stomach = ellipsoid_sdf(coords, (-0.25, 0.22, dome - 0.12), np.array([0.18, 0.14, 0.14]) * organ_scale[3])
    stomach_frac = soft_inside(stomach, eps) * below * cavity
    painter.paint(stomach_frac, 15.0, 9)
    painter.paint(stomach_frac * soft_inside((dome - 0.08) - z, eps), -980.0, 9)  # gas cap in the fundus

    # aorta (left of the spine) through thorax and abdomen
    aorta = np.sqrt((x + 0.1) ** 2 + (y + 0.2) ** 2) - 0.065
    painter.paint(soft_inside(aorta, eps) * cavity, 45.0, 7)

    # spine: vertebral bodies (cortical shell, cancellous core) with discs, canal, posterior elements, muscles
    period = 0.26 + 0.03 * rng.random()
    phase = rng.random()
    disc = np.abs(((z / period + phase) % 1.0) - 0.5) * period  # distance to the disc mid-plane
    vb = np.sqrt((x / 0.13) ** 2 + ((y + 0.38) / 0.11) ** 2) - 1.0
    vb = vb * 0.11
    paraspinal = ellipsoid_sdf((np.abs(x), y, z), (0.15, -0.52, 0.0), (0.1, 0.1, 5.0))
    painter.paint(soft_inside(paraspinal, eps) * soft_inside(body + 0.02, eps), 50.0, 2)
    painter.paint(soft_inside(vb, eps), 80.0, 2)  # disc everywhere, bone overwrites away from the disc planes
    bone = soft_inside(vb, eps) * soft_inside(0.025 - disc, eps)
    painter.paint(bone, 1200.0, 8)
    shell = max(0.02, 1.2 * eps)  # cortical shell at least about a voxel thick
    painter.paint(soft_inside(vb + shell, eps) * soft_inside(0.025 + shell - disc, eps), 350.0, 8)
    canal = np.sqrt(x**2 + (y + 0.56) ** 2) - 0.05
    posterior = ellipsoid_sdf((x, y, z), (0.0, -0.58, 0.0), (0.14, 0.06, 5.0))
    painter.paint(soft_inside(posterior, eps) * soft_inside(0.03 - disc, eps), 700.0, 8)
    painter.paint(soft_inside(canal, eps), 15.0, 2)

    # ribs: slanted hoops inside the body wall above the lower ribcage, sparing the spine; sternum anteriorly
    ring = (body_r - (1.0 - (fat_t + 0.07) / by)) * by
    angle = np.arctan2(y - bcy, x)
    rib_phase = (z - 0.12 * np.abs(np.cos(angle)) + rng.random() * 0.2) / 0.17
    rib_band = np.abs((rib_phase % 1.0) - 0.5) * 0.17
    rib_region = soft_inside((dome - 0.35) - z, eps)
    ribs = soft_inside(np.abs(ring) - 0.025, eps) * soft_inside(rib_band - 0.03, eps) * rib_region
    ribs *= 1.0 - soft_inside(np.abs(angle + np.pi / 2) - 0.45, 0.1)
    painter.paint(ribs, 700.0, 8)
    sternum = soft_inside(np.abs(x) - 0.06, eps) * soft_inside(np.abs(ring) - 0.03, eps) * (y > bcy) * above
    painter.paint(sternum, 600.0, 8)

    image = painter.image
    texture = gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma=0.8)
    image = image + 15.0 * texture * (painter.labels > 0)
    if noise_std > 0:
        image = image + noise_std * rng.standard_normal(shape).astype(np.float32)
    image = np.clip(image, -1024.0, 3071.0).astype(np.float32)
    return (image, painter.labels) if return_labels else image


def normalize_hu(
    volume: np.ndarray,
    hu_min: float = -1000.0,
    hu_max: float = 1000.0,
    out_range: tuple[float, float] = (0.0, 1.0),
    clip: bool = True,
) -> np.ndarray:
    """Linearly map the HU window ``[hu_min, hu_max]`` to ``out_range`` (e.g. ``(0, 1)`` or ``(-1, 1)``).

    Args:
        volume: array in Hounsfield units.
        hu_min: HU mapped to ``out_range[0]``.
        hu_max: HU mapped to ``out_range[1]``.
        out_range: target interval.
        clip: clip the result to ``out_range``.

    Returns:
        float32 array of the same shape.

    Raises:
        ValueError: if ``hu_max <= hu_min``.
    """
    if not hu_max > hu_min:
        raise ValueError(f"hu_max must be > hu_min, got hu_min={hu_min}, hu_max={hu_max}.")
    lo, hi = out_range
    out = (np.asarray(volume, dtype=np.float32) - hu_min) / (hu_max - hu_min) * (hi - lo) + lo
    if clip:
        out = np.clip(out, min(lo, hi), max(lo, hi))
    return out.astype(np.float32)
