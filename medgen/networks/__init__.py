"""Networks of the five methods, in pure PyTorch with the official parameter names, and their checkpoint loaders.

Layers live in their own modules (:mod:`medgen.networks.score_sde_layers`, :mod:`medgen.networks.guided_layers`)
and are not re-exported here, since both families have blocks of the same name.
"""

from __future__ import annotations

from medgen.networks.checkpoint import (
    CheckpointMismatchError,
    apply_ordered_ema,
    load_state_dict_checked,
    read_checkpoint,
    strip_prefix,
    unwrap_network,
)
from medgen.networks.convert import OFFICIAL_KINDS, from_official
from medgen.networks.ddpm import DDPMUNet, ddpm_from_official
from medgen.networks.edm_pickle import RestrictedUnpickler, load_edm_snapshot
from medgen.networks.guided_unet import GuidedUNet, guided_unet_from_official
from medgen.networks.ncsnpp import NCSNpp, ncsnpp_from_official
from medgen.networks.sdm_unet import (
    SDMUNet,
    SPADEGroupNorm,
    one_hot_labels,
    reference_for_slab,
    sdm_unet_from_official,
    slab_z_position_channel,
)
from medgen.networks.songunet import (
    PatchEDMPrecond,
    SongUNet,
    canvas_position_channels,
    padis_from_official,
    patch_position_channels,
)
from medgen.networks.wavunet import WavUNet, wavunet_from_official

__all__ = [
    "CheckpointMismatchError",
    "DDPMUNet",
    "GuidedUNet",
    "NCSNpp",
    "OFFICIAL_KINDS",
    "PatchEDMPrecond",
    "RestrictedUnpickler",
    "SDMUNet",
    "SPADEGroupNorm",
    "SongUNet",
    "WavUNet",
    "apply_ordered_ema",
    "canvas_position_channels",
    "ddpm_from_official",
    "from_official",
    "guided_unet_from_official",
    "load_edm_snapshot",
    "load_state_dict_checked",
    "ncsnpp_from_official",
    "one_hot_labels",
    "padis_from_official",
    "patch_position_channels",
    "read_checkpoint",
    "reference_for_slab",
    "sdm_unet_from_official",
    "slab_z_position_channel",
    "strip_prefix",
    "unwrap_network",
    "wavunet_from_official",
]
