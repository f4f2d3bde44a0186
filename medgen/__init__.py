"""medgen: 3D medical-imaging diffusion methods as MONAI transforms, networks, inferers and bundles.

Subpackages (imported on demand, so ``import medgen`` stays light):

- :mod:`medgen.physics`: linear forward operators ``A``, ``A^H`` (z-axis averaging, Cartesian MRI, parallel-beam CT,
  blur, downsampling).
- :mod:`medgen.transforms`: MONAI transforms (wavelet, k-space, sinogram, resolution, intensity).
- :mod:`medgen.networks`: NCSN++, DDPM U-Net, guided-diffusion U-Nets, WavU-Net, SDM U-Net, EDM SongUNet and
  checkpoint converters (:func:`medgen.networks.from_official`).
- :mod:`medgen.diffusion`: SDEs, DDPM schedules, predictors/correctors, guidance and data consistency, losses.
- :mod:`medgen.inferers`: :class:`monai.inferers.Inferer` subclasses for each method.
- :mod:`medgen.data`: procedural sample data (phantoms, label maps).
"""

from __future__ import annotations

__version__ = "0.1.0"
