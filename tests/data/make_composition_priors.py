"""Train the two small priors of ``tests/inferers/test_compositions.py`` (issue 8, compositions 1 and 5) on the CPU.

- ``composition_padis_complex.pt``: a 2-channel :class:`~medgen.networks.songunet.PatchEDMPrecond` (PaDIS' patch
  prior with positional channels) trained with PaDIS' patch EDM loss
  (:class:`~medgen.engines.training.patch_edm.PatchEDMTrainingLoss`, the recipe of ``bundles/padis_ct/configs/train.json``) on
  COMPLEX brain-phantom slices ``[real, imag]``: a min-max scaled magnitude slice times a smooth random phase
  (:func:`complex_slices`), zero-padded by :data:`PADIS_PAD` like PaDIS' dataset. It is the prior of multi-coil
  CS-MRI with ``CartesianMRI(mask, maps, channels=True)``.
- ``composition_ddpm_unet.pt``: a user's own MONAI network, ``monai.networks.nets.DiffusionModelUNet`` (2D, 1
  channel), trained as a DDPM with ``monai.networks.schedulers.DDPMScheduler`` (1000 linear steps, epsilon
  prediction) on 32^2 brain-phantom slices of the three orientations, data in ``[0, 1]``.

Both use :data:`TRAIN_SEEDS` volumes of :func:`medgen.data.brain_mri_phantom` (32^3, min-max scaled to ``[0, 1]`` as
TPDM's bundle trains), never the held-out sample (seed 7) the tests reconstruct. Adam with a linear warm-up, gradient
clipping and an exponential moving average of the weights (the EMA is what is saved). Every draw comes from seeded
generators, so a run on one machine repeats; ``composition_priors.json`` records the settings, the CPU time and the
loss of the saved weights on a fixed evaluation batch (:func:`evaluation_loss`), which a test recomputes from the
committed weights.

Run from the repository root (about 9 CPU minutes with one thread)::

    python tests/data/make_composition_priors.py --overwrite        # both, into tests/data/
    python tests/data/make_composition_priors.py --which ddpm --iterations 2 --output_dir /tmp/check
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

DATA_DIR = Path(__file__).parent
PADIS_FILE, DDPM_FILE, RECORD_FILE = "composition_padis_complex.pt", "composition_ddpm_unet.pt", "composition_priors.json"
IMAGE_SIZE = 32
TRAIN_SEEDS = tuple(range(1000, 1032))
EVAL_SEED = 12345

PADIS_PAD = 16
"""Canvas padding of the complex patch prior: 32-pixel images with 16-pixel patches (3 per side) need pad 16."""
PADIS_NETWORK: dict[str, Any] = dict(
    img_resolution=IMAGE_SIZE + 2 * PADIS_PAD, img_channels=2, pos_channels=2, sigma_data=0.5, model_channels=16,
    channel_mult=[1, 2], num_blocks=1, attn_resolutions=[], dropout=0.0, embedding_type="positional",
    encoder_type="standard", decoder_type="standard", channel_mult_noise=1, resample_filter=[1, 1],
)
PADIS_LOSS: dict[str, Any] = dict(
    patch_sizes=(8, 16, 32), probabilities=(0.2, 0.3, 0.5), batch_multipliers=(4, 2, 1), p_mean=-1.2, p_std=1.2,
    sigma_data=0.5, reduction="sum",
)
DDPM_NETWORK: dict[str, Any] = dict(
    spatial_dims=2, in_channels=1, out_channels=1, channels=(16, 24, 32), attention_levels=(False, False, False),
    num_res_blocks=1, norm_num_groups=8, num_head_channels=32,
)
DDPM_SCHEDULER: dict[str, Any] = dict(num_train_timesteps=1000, schedule="linear_beta", prediction_type="epsilon")
TRAINING: dict[str, dict[str, Any]] = {
    "padis": dict(iterations=2500, batch_size=8, learning_rate=5e-4, warmup=100, ema_decay=0.998, seed=0),
    "ddpm": dict(iterations=1500, batch_size=32, learning_rate=1e-3, warmup=100, ema_decay=0.998, seed=1),
}


def phantom_slices(seeds: tuple[int, ...] = TRAIN_SEEDS) -> torch.Tensor:
    """Slices ``(3 * 32 * len(seeds), 1, 32, 32)`` of the three orientations of min-max scaled 32^3 brain phantoms."""
    from medgen.data import brain_mri_phantom
    from medgen.transforms.intensity import TPDMScaleIntensity

    scale = TPDMScaleIntensity()
    slices = []
    for seed in seeds:
        volume = torch.as_tensor(scale(brain_mri_phantom((IMAGE_SIZE,) * 3, seed)[None]))[0]
        slices += [volume, volume.permute(1, 0, 2), volume.permute(2, 0, 1)]
    return torch.cat(slices).unsqueeze(1).float()


def smooth_phase(count: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """Random smooth phases ``(count, 1, size, size)`` in radians: ``a0 + a1 u + a2 v + a3 u v`` on ``[-1, 1]^2``.

    ``a0 ~ U(-pi, pi)`` (the global phase of MR images is arbitrary), ``a1, a2 ~ U(-pi/2, pi/2)``,
    ``a3 ~ U(-pi/4, pi/4)``.
    """
    coefficients = (torch.rand(count, 4, generator=generator) * 2 - 1) * torch.tensor(
        [math.pi, math.pi / 2, math.pi / 2, math.pi / 4]
    )
    v, u = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    basis = torch.stack([torch.ones_like(u), u, v, u * v])  # (4, size, size)
    return torch.einsum("nk,khw->nhw", coefficients, basis).unsqueeze(1)


def complex_slices(magnitude: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``[real, imag]`` channels ``(N, 2, H, W)`` of ``magnitude (N, 1, H, W)`` times a :func:`smooth_phase`."""
    phase = smooth_phase(magnitude.shape[0], magnitude.shape[-1], generator)
    return torch.cat([magnitude * torch.cos(phase), magnitude * torch.sin(phase)], dim=1)


def padis_network() -> nn.Module:
    from medgen.networks.songunet import PatchEDMPrecond

    return PatchEDMPrecond(**PADIS_NETWORK)


def ddpm_network() -> nn.Module:
    from monai.networks.nets import DiffusionModelUNet

    return DiffusionModelUNet(**DDPM_NETWORK)


def ddpm_scheduler() -> Any:
    from monai.networks.schedulers import DDPMScheduler

    return DDPMScheduler(**DDPM_SCHEDULER)


def padis_data(generator: torch.Generator, seeds: tuple[int, ...] = TRAIN_SEEDS) -> torch.Tensor:
    """Zero-padded complex training canvases ``(N, 2, 64, 64)``."""
    images = complex_slices(phantom_slices(seeds), generator)
    return nn.functional.pad(images, (PADIS_PAD,) * 4)


def padis_loss_fn() -> Callable[[nn.Module, torch.Tensor, torch.Generator], torch.Tensor]:
    from medgen.engines.training.patch_edm import PatchEDMTrainingLoss

    return PatchEDMTrainingLoss(**PADIS_LOSS)


def ddpm_loss(network: nn.Module, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The DDPM epsilon loss: ``mean ||eps - net(add_noise(x0, eps, t), t)||^2`` with ``t ~ U{0..T-1}``."""
    scheduler = ddpm_scheduler()
    t = torch.randint(0, scheduler.num_train_timesteps, (images.shape[0],), generator=generator)
    noise = torch.randn(images.shape, generator=generator)
    noisy = scheduler.add_noise(images, noise, t)
    return torch.mean((network(noisy, t) - noise) ** 2)


def _setup(which: str) -> tuple[Callable[[], nn.Module], Callable[..., torch.Tensor], torch.Tensor]:
    generator = torch.Generator().manual_seed(TRAINING[which]["seed"])
    if which == "padis":
        return padis_network, padis_loss_fn(), padis_data(generator)
    return ddpm_network, ddpm_loss, phantom_slices()


def evaluation_loss(which: str, network: nn.Module, batches: int = 8) -> float:
    """The training loss of ``network`` averaged over ``batches`` fixed batches (held-out phantom seeds 900-903,
    generator seeded with :data:`EVAL_SEED`), in float64 for a machine-independent figure."""
    generator = torch.Generator().manual_seed(EVAL_SEED)
    seeds = tuple(range(900, 904))
    if which == "padis":
        data, loss_fn = padis_data(generator, seeds), padis_loss_fn()
    else:
        data, loss_fn = phantom_slices(seeds), ddpm_loss
    size = TRAINING[which]["batch_size"]
    network = network.double().eval()
    total = 0.0
    with torch.no_grad():
        for _ in range(batches):
            index = torch.randint(0, data.shape[0], (size,), generator=generator)
            total += float(loss_fn(network, data[index].double(), generator))
    network.float()
    return total / batches


def train(which: str, iterations: int | None = None, log_every: int = 250) -> tuple[nn.Module, dict[str, Any]]:
    """Train one prior; returns the EMA network and a record of the run."""
    settings = dict(TRAINING[which])
    if iterations is not None:
        settings["iterations"] = iterations
    torch.manual_seed(settings["seed"])  # the network's initial weights
    make_network, loss_fn, data = _setup(which)
    network = make_network()
    ema = torch.optim.swa_utils.AveragedModel(
        network, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(settings["ema_decay"])
    )
    optimizer = torch.optim.Adam(network.parameters(), lr=settings["learning_rate"])
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: min(1.0, (i + 1) / settings["warmup"]))
    generator = torch.Generator().manual_seed(settings["seed"] + 100)
    start, running = time.process_time(), 0.0
    network.train()
    for iteration in range(settings["iterations"]):
        index = torch.randint(0, data.shape[0], (settings["batch_size"],), generator=generator)
        loss = loss_fn(network, data[index], generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(network.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        ema.update_parameters(network)
        running += float(loss.detach())
        if (iteration + 1) % log_every == 0:
            print(f"{which} {iteration + 1}/{settings['iterations']} loss {running / log_every:.4f}", flush=True)
            running = 0.0
    trained = ema.module
    record = {
        "training": settings,
        "train_seeds": [TRAIN_SEEDS[0], TRAIN_SEEDS[-1]],
        "train_slices": int(data.shape[0]),
        "cpu_seconds": round(time.process_time() - start, 1),
        "torch": torch.__version__,
        "evaluation_loss": evaluation_loss(which, trained),
        "parameters": sum(p.numel() for p in trained.parameters()),
    }
    return trained, record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--which", choices=("padis", "ddpm", "both"), default="both")
    parser.add_argument("--iterations", type=int, default=None, help="override the recorded iteration counts")
    parser.add_argument("--output_dir", type=Path, default=DATA_DIR)
    parser.add_argument("--overwrite", action="store_true", help="replace existing weights")
    args = parser.parse_args(argv)
    from medgen.engines.training import save_state_dict
    from medgen.engines.writers import write_atomically

    torch.set_num_threads(1)
    kinds = ("padis", "ddpm") if args.which == "both" else (args.which,)
    targets = {which: args.output_dir / (PADIS_FILE if which == "padis" else DDPM_FILE) for which in kinds}
    existing = [str(path) for path in targets.values() if path.exists()]
    if existing and not args.overwrite:
        parser.error(f"{', '.join(existing)} exist(s); pass --overwrite to replace, or another --output_dir.")
    record_path = args.output_dir / RECORD_FILE
    records = json.loads(record_path.read_text()) if record_path.exists() else {}
    for which in kinds:
        network, record = train(which, args.iterations)
        save_state_dict(network, targets[which])
        records[which] = record
        print(json.dumps({which: record}), flush=True)
    text = json.dumps(records, indent=2, sort_keys=True) + "\n"
    write_atomically(record_path, lambda tmp: Path(tmp).write_text(text), overwrite=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
