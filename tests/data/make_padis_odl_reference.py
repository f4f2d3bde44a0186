"""Make ``tests/data/padis_odl_reference.pt``: PaDIS's official CT operator (ODL) on fixed images.

PaDIS (jasonhu4/PaDIS ``odlstuff/parbeam.py``) builds its operator with ODL::

    space = odl.uniform_discr([-20, -20], [20, 20], (256, 256))
    geometry = odl.tomo.Parallel2dGeometry(odl.uniform_partition(0, pi, views), odl.uniform_partition(-40, 40, 512))
    A = odl.tomo.RayTransform(space, geometry)
    Adagger = odl.tomo.fbp_op(A, filter_type="Hann", frequency_scaling=0.9)

and applies it to image tensors as they are (array axis 0 is ODL's x0). This script evaluates that pipeline on the
scikit-image Shepp-Logan phantom (and camera image, resized and scaled to [0, 1]) at the official size (256 px, 512
bins, 20 views; phantom only) and at the 64 px scale of the padis_ct bundle (128 bins over the same [-40, 40], 8 and
20 views), and stores the images, the sinograms ``(views, bins)`` and the FBP reconstructions in float32.

Requirements (not medgen dependencies): ``pip install odl astra-toolbox array-api-compat scikit-image``. The ray
transform uses ODL's ``astra_cpu`` backend (ASTRA's CPU 'linear' projector), the one available without a GPU; PaDIS ran
``astra_cuda``, whose ray-driven kernel agrees with it to the discretisation level. Run from the repository root::

    python tests/data/make_padis_odl_reference.py

It refuses to overwrite an existing file (delete it first to regenerate).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

OUTPUT = Path(__file__).parent / "padis_odl_reference.pt"
FIELD_OF_VIEW = 40.0
DETECTOR_WIDTH = 80.0
# (image size, detector bins, views, images): the official geometry and the bundle's 64 px scale
CASES = ((256, 512, (20,), ("shepp_logan",)), (64, 128, (8, 20), ("shepp_logan", "camera")))


def images(size: int) -> dict[str, np.ndarray]:
    from skimage.data import camera, shepp_logan_phantom
    from skimage.transform import resize

    cam = resize(camera().astype(np.float64) / 255.0, (size, size), anti_aliasing=True)
    return {
        "shepp_logan": resize(shepp_logan_phantom(), (size, size), anti_aliasing=True).astype(np.float32),
        "camera": cam.astype(np.float32),
    }


def official_operators(size: int, bins: int, views: int):
    import odl
    from odl.applications import tomo

    half = FIELD_OF_VIEW / 2
    space = odl.uniform_discr([-half, -half], [half, half], (size, size), dtype="float32")
    geometry = tomo.Parallel2dGeometry(
        odl.uniform_partition(0, np.pi, views),
        odl.uniform_partition(-DETECTOR_WIDTH / 2, DETECTOR_WIDTH / 2, bins),
    )
    ray = tomo.RayTransform(space, geometry, impl="astra_cpu")
    return space, ray, tomo.fbp_op(ray, filter_type="Hann", frequency_scaling=0.9)


def main() -> None:
    import odl

    if OUTPUT.exists():
        sys.exit(f"{OUTPUT} exists; delete it to regenerate.")
    reference: dict = {
        "odl_version": odl.__version__,
        "backend": "astra_cpu",
        "field_of_view": FIELD_OF_VIEW,
        "detector_width": DETECTOR_WIDTH,
        "cases": {},
    }
    import astra

    reference["astra_version"] = astra.__version__
    for size, bins, view_counts, names in CASES:
        for name, image in images(size).items():
            if name not in names:
                continue
            for views in view_counts:
                space, ray, fbp = official_operators(size, bins, views)
                sinogram = np.asarray(ray(space.element(image)).data)
                reconstruction = np.asarray(fbp(ray.range.element(sinogram)).data)
                reference["cases"][f"{name}_{size}px_{views}views"] = {
                    "image_size": size,
                    "num_detectors": bins,
                    "views": views,
                    "image": torch.from_numpy(image.copy()),
                    "sinogram": torch.from_numpy(sinogram.astype(np.float32)),  # (views, bins)
                    "fbp": torch.from_numpy(reconstruction.astype(np.float32)),
                }
    handle, tmp = tempfile.mkstemp(dir=OUTPUT.parent, suffix=".tmp")
    os.close(handle)
    try:
        torch.save(reference, tmp)
        os.link(tmp, OUTPUT)  # fails instead of overwriting a file created meanwhile
    finally:
        os.unlink(tmp)
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
