"""A multi-contrast brain MRI phantom (T1, T1ce, T2, FLAIR of one anatomy, with an optional glioma-like lesion).

The anatomy is exactly that of :func:`medgen.data.phantoms.brain_mri_phantom` for the same seed (the ``"t1"``
contrast of a case without lesion IS that phantom); every tissue layer is composited again with the relative
intensities of the other contrasts (:data:`CONTRAST_TABLES`), so the four volumes share every boundary, the bias field
and the tissue texture, and differ in contrast and noise, like the co-registered sequences of a BraTS case:

==============  =====================  ======================  =====================  =====================
tissue          T1                     T1ce                    T2                     FLAIR
==============  =====================  ======================  =====================  =====================
white matter    bright (0.78)          bright (0.76)           dark (0.38)            mid (0.42)
grey matter     mid (0.5)              mid (0.52)              mid (0.55)             brighter than WM (0.6)
CSF             dark (0.12)            dark (0.12)             bright (0.95)          suppressed (0.07)
oedema          dark (0.5)             dark (0.45)             bright (0.78)          bright (0.85)
enhancing rim   mid (0.55)             very bright (0.95)      mid (0.6)              bright (0.7)
necrotic core   dark (0.2)             dark (0.18)             bright (0.9)           mid (0.35)
==============  =====================  ======================  =====================  =====================

The lesion (``lesion=True``) is a glioma-like mass in one hemisphere: a necrotic core inside an enhancing rim,
surrounded by an irregular oedema, all confined to the cerebrum; its label map uses the BraTS classes
(:data:`BRATS_LESION_LABELS`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import ndimage

from medgen.data.phantoms import BRAIN_LABELS, _brain_phantom, _Painter
from medgen.data.shapes import check_seed, check_shape, ellipsoid_sdf, smooth_field, soft_inside

__all__ = [
    "BRATS_CONTRASTS",
    "BRATS_LESION_LABELS",
    "CONTRAST_TABLES",
    "MULTICONTRAST_TISSUE_LABELS",
    "brain_mri_contrasts",
    "intracranial_mask",
]

BRATS_CONTRASTS: tuple[str, ...] = ("t1", "t1ce", "t2", "flair")
"""The four BraTS sequences in their canonical order (BraTS 2023 names: t1n, t1c, t2w, t2f)."""

BRATS_LESION_LABELS: dict[int, str] = {
    0: "background",
    1: "necrotic tumour core (NCR)",
    2: "peritumoral oedema (ED)",
    3: "enhancing tumour (ET; label 4 in BraTS 2017-2021)",
}
"""Classes of the lesion label map of :func:`brain_mri_contrasts` (BraTS 2023 numbering)."""

MULTICONTRAST_TISSUE_LABELS: dict[int, str] = {**BRAIN_LABELS, 7: "lesion (tumour and oedema)"}
"""Tissue classes of :func:`brain_mri_contrasts` (those of :data:`~medgen.data.phantoms.BRAIN_LABELS` plus lesion)."""

_LESION_ROLES = ("oedema", "enhancing", "necrosis")

CONTRAST_TABLES: dict[str, dict[str, float]] = {
    "t1": {"oedema": 0.5, "enhancing": 0.55, "necrosis": 0.2},  # the anatomy's T1 values come from the phantom
    "t1ce": {
        "background": 0.0, "scalp": 0.8, "skull": 0.07, "diploe": 0.34, "csf": 0.12, "face": 0.55, "gm": 0.52,
        "wm": 0.76, "brainstem": 0.68, "deep": 0.62, "orbital_fat": 0.85, "vitreous": 0.1,
        "oedema": 0.45, "enhancing": 0.95, "necrosis": 0.18,
    },
    "t2": {
        "background": 0.0, "scalp": 0.6, "skull": 0.04, "diploe": 0.3, "csf": 0.95, "face": 0.35, "gm": 0.55,
        "wm": 0.38, "brainstem": 0.42, "deep": 0.45, "orbital_fat": 0.55, "vitreous": 0.95,
        "oedema": 0.78, "enhancing": 0.6, "necrosis": 0.9,
    },
    "flair": {
        "background": 0.0, "scalp": 0.65, "skull": 0.04, "diploe": 0.35, "csf": 0.07, "face": 0.4, "gm": 0.6,
        "wm": 0.42, "brainstem": 0.5, "deep": 0.52, "orbital_fat": 0.6, "vitreous": 0.05,
        "oedema": 0.85, "enhancing": 0.7, "necrosis": 0.35,
    },
}
"""Mean relative intensity of each tissue layer per contrast (before bias field and noise; each seed perturbs every
value by a few percent). The cerebellar folia are a CSF/grey-matter partial volume (``csf + 0.26 (gm - csf)``)."""


def _contrast_table(name: str, rng: np.random.Generator) -> dict[str, float]:
    """One seed's table of ``name``: every tissue value times ``1 + 0.03 N(0, 1)``, the folia mixture added."""
    table = {role: value * (1.0 + 0.03 * rng.standard_normal()) for role, value in CONTRAST_TABLES[name].items()}
    table["background"] = CONTRAST_TABLES[name].get("background", 0.0)
    if "gm" in table:
        table["folia"] = table["csf"] + 0.26 * (table["gm"] - table["csf"])
    return table


class _LesionPainter:
    """Paints a glioma-like lesion (oedema, enhancing rim, necrotic core) and records its BraTS label map."""

    def __init__(self, rng: np.random.Generator, t1_values: Mapping[str, float]) -> None:
        self.rng = rng
        self.t1_values = t1_values
        self.labels: np.ndarray | None = None

    def __call__(
        self, painter: _Painter, coords: tuple[np.ndarray, np.ndarray, np.ndarray], eps: float, brain: np.ndarray
    ) -> None:
        rng = self.rng
        side = rng.choice([-1.0, 1.0])
        centre = (side * rng.uniform(0.2, 0.34), rng.uniform(-0.3, 0.35), rng.uniform(0.0, 0.3))
        radius = rng.uniform(0.1, 0.17)
        axes = radius * (1.0 + 0.15 * rng.standard_normal(3)).clip(0.7, 1.3)
        irregular = 0.25 * radius * smooth_field(coords, rng, correlation=0.3)
        tumour = ellipsoid_sdf(coords, centre, axes, irregular)
        oedema_reach = radius * rng.uniform(0.5, 1.1)
        oedema = tumour - oedema_reach * (1.0 + 0.4 * smooth_field(coords, rng, correlation=0.35))
        rim = max(0.3 * radius, 1.5 * eps)

        self.labels = np.zeros(brain.shape, dtype=np.uint8)
        layers = (
            (soft_inside(oedema, eps) * brain, "oedema", 2),
            (soft_inside(tumour, eps) * brain, "enhancing", 3),
            (soft_inside(tumour + rim, eps) * brain, "necrosis", 1),
        )
        for fraction, role, label in layers:
            painter.paint(fraction, self.t1_values[role], 7, role)
            self.labels[fraction > 0.5] = label


def intracranial_mask(tissue: np.ndarray) -> np.ndarray:
    """The intracranial region of a brain phantom's tissue labels, as a skull-stripping tool would give it.

    The largest connected region of CSF, grey and white matter, deep nuclei and lesion (labels >= 3 of
    :data:`MULTICONTRAST_TISSUE_LABELS`; this drops the eyes' vitreous, which shares the CSF label), holes filled.

    Args:
        tissue: ``(D, H, W)`` tissue labels of :func:`brain_mri_contrasts` or
            :func:`~medgen.data.phantoms.brain_mri_phantom`.

    Returns:
        boolean mask of the same shape.
    """
    components, count = ndimage.label(np.asarray(tissue) >= 3)
    if count == 0:
        return np.zeros(np.shape(tissue), dtype=bool)
    largest = 1 + int(np.argmax(np.bincount(components.ravel())[1:]))
    return ndimage.binary_fill_holes(components == largest)


def brain_mri_contrasts(
    shape: Sequence[int] = (64, 64, 64),
    seed: int | np.random.Generator = 0,
    contrasts: Sequence[str] = BRATS_CONTRASTS,
    lesion: bool = True,
    skull_strip: bool = False,
    noise_std: float = 0.012,
    bias_strength: float = 0.08,
    return_labels: bool = False,
) -> dict[str, np.ndarray] | tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Co-registered T1, T1ce, T2 and FLAIR brain MRI-like volumes of one anatomy, each in ``[0, 1]``.

    Without a lesion, ``"t1"`` equals :func:`~medgen.data.phantoms.brain_mri_phantom` of the same ``shape``, ``seed``,
    ``noise_std`` and ``bias_strength``. The other contrasts share its tissue fractions, bias field and texture
    (:data:`CONTRAST_TABLES` gives their intensities) and have their own Rician noise.

    Args:
        shape: ``(D, H, W)`` voxels, each >= 8 (axes as :func:`~medgen.data.phantoms.brain_mri_phantom`).
        seed: int seed or a numpy Generator (the extra contrasts and the lesion draw from a stream spawned from it).
        contrasts: which of :data:`BRATS_CONTRASTS` to return, in this order.
        lesion: paint a glioma-like lesion (necrotic core, enhancing rim, oedema) in one hemisphere.
        skull_strip: set every contrast to exactly 0 outside :func:`intracranial_mask`, as BraTS data are.
        noise_std: standard deviation of the complex Gaussian noise of every contrast.
        bias_strength: standard deviation of the log bias field (shared by the contrasts).
        return_labels: also return the tissue labels (:data:`MULTICONTRAST_TISSUE_LABELS`) and the lesion labels
            (:data:`BRATS_LESION_LABELS`, all 0 without a lesion).

    Returns:
        ``{contrast: float32 image}``; with ``return_labels`` a tuple ``(images, tissue uint8, lesion uint8)``.

    Raises:
        TypeError, ValueError: for a bad ``shape`` or ``seed``, an unknown or repeated contrast, or negative
            noise/bias.
    """
    shape = check_shape(shape)
    rng = check_seed(seed)
    if noise_std < 0 or bias_strength < 0:
        raise ValueError(f"noise_std and bias_strength must be >= 0, got {noise_std} and {bias_strength}.")
    contrasts = tuple(contrasts)
    unknown = [c for c in contrasts if c not in BRATS_CONTRASTS]
    if unknown or not contrasts or len(set(contrasts)) != len(contrasts):
        raise ValueError(f"contrasts must be distinct names from {BRATS_CONTRASTS}, got {contrasts!r}.")
    extra_rng = rng.spawn(1)[0]
    tables = {name: _contrast_table(name, extra_rng) for name in BRATS_CONTRASTS if name != "t1"}
    t1_lesion = _contrast_table("t1", extra_rng)
    painter_hook = _LesionPainter(extra_rng, t1_lesion) if lesion else None
    t1, tissue, others = _brain_phantom(shape, rng, noise_std, bias_strength, tables, extra_rng, painter_hook)
    images = {"t1": t1, **others}
    if skull_strip:
        outside = ~intracranial_mask(tissue)
        for image in images.values():
            image[outside] = 0.0
    lesion_labels = painter_hook.labels if painter_hook is not None else np.zeros(shape, dtype=np.uint8)
    out = {name: images[name] for name in contrasts}
    return (out, tissue, lesion_labels) if return_labels else out
