"""DiffusionTrainingStep + WaveletDiffusionTrainingLoss + EMA in a MONAI SupervisedTrainer: learning, checkpoint
resume equal to an uninterrupted run, seeding."""

from __future__ import annotations

from pathlib import Path

import pytest
from ignite.engine import Events
import torch
from monai.engines import SupervisedTrainer
from monai.handlers import CheckpointLoader, CheckpointSaver
from torch.utils.data import DataLoader, DistributedSampler

from medgen.diffusion.losses import wavelet_diffusion_loss
from medgen.engines.training.ema import ExponentialMovingAverage
from medgen.engines.training.wavelet import WaveletDiffusionTrainingLoss
from medgen.engines.training.step import DiffusionTrainingStep, iteration_generator
from medgen.diffusion.gaussian import wdm_diffusion
from medgen.networks.guided_unet import GuidedUNet


def tiny_unet(seed: int = 0) -> GuidedUNet:
    torch.manual_seed(seed)
    return GuidedUNet(spatial_dims=3, in_channels=8, out_channels=8, model_channels=8, channel_mult=(1, 2),
                      num_res_blocks=1, num_groups=4, additive_skips=True, bottleneck_attention=False)


def blob_images(n: int = 6, size: int = 8) -> list[dict[str, torch.Tensor]]:
    """Bright balls of varying radius on a -1 background, in [-1, 1]."""
    grid = torch.stack(torch.meshgrid(*[torch.linspace(-1, 1, size)] * 3, indexing="ij"))
    radius = grid.square().sum(0).sqrt()
    return [{"image": torch.where(radius < 0.5 + 0.08 * k, 0.8, -1.0)[None]} for k in range(n)]


def make_trainer(network, max_epochs: int, handlers=(), seed: int = 0, lr: float = 3e-3):
    data = blob_images()
    sampler = DistributedSampler(data, num_replicas=1, rank=0, shuffle=True, seed=seed)
    loader = DataLoader(data, batch_size=2, sampler=sampler, num_workers=0)
    optimizer = torch.optim.AdamW(network.parameters(), lr=lr)
    ema = ExponentialMovingAverage(network, decay=0.9, warmup=True)
    trainer = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=max_epochs, train_data_loader=loader, network=network,
        optimizer=optimizer, loss_function=WaveletDiffusionTrainingLoss(),
        iteration_update=DiffusionTrainingStep(seed=seed), train_handlers=[ema, *handlers], decollate=False,
    )
    return trainer, optimizer, ema


def fixed_eval_loss(network) -> float:
    """The WDM loss on all images at fixed timesteps and noise (same draws before and after training)."""
    images = torch.cat([d["image"][None] for d in blob_images()])
    t = torch.tensor([50, 200, 400, 600, 800, 950])
    generator = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        return float(wavelet_diffusion_loss(wdm_diffusion(), network, images, t, generator=generator)["loss"])


def test_training_reduces_the_loss_and_reports_it():
    network = tiny_unet()
    before = fixed_eval_loss(network)
    trainer, _, ema = make_trainer(network, max_epochs=8)
    losses: list[float] = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(float(e.state.output["loss"])))
    trainer.run()
    after = fixed_eval_loss(network)
    assert trainer.state.iteration == 24 and len(losses) == 24
    assert after < 0.5 * before, (before, after)
    assert fixed_eval_loss(ema.averaged) < before
    assert int(ema.num_updates) == 24


def test_resumed_run_equals_uninterrupted_run(tmp_path: Path):
    network = tiny_unet()
    trainer, optimizer, ema = make_trainer(network, max_epochs=4)
    trainer.run()

    first = tiny_unet()
    trainer_a, optimizer_a, ema_a = make_trainer(first, max_epochs=2)
    saver = CheckpointSaver(str(tmp_path), {"network": first, "optimizer": optimizer_a, "ema": ema_a,
                                            "trainer": trainer_a}, save_interval=1, n_saved=1, file_prefix="ckpt")
    saver.attach(trainer_a)
    trainer_a.run()
    checkpoint = sorted(tmp_path.glob("ckpt*.pt"))
    assert len(checkpoint) == 1 and "epoch=2" in checkpoint[0].name

    resumed = tiny_unet(seed=99)  # a different initialisation: everything must come from the checkpoint
    trainer_b, optimizer_b, ema_b = make_trainer(resumed, max_epochs=4)
    CheckpointLoader(str(checkpoint[0]), {"network": resumed, "optimizer": optimizer_b, "ema": ema_b,
                                          "trainer": trainer_b}).attach(trainer_b)
    trainer_b.run()
    assert trainer_b.state.iteration == trainer.state.iteration == 12
    for reference, result in ((network, resumed), (ema, ema_b)):
        ref_state, res_state = reference.state_dict(), result.state_dict()
        assert ref_state.keys() == res_state.keys()
        for key in ref_state:
            assert torch.equal(ref_state[key], res_state[key]), key
    assert not torch.equal(resumed.out[2].weight, tiny_unet(99).out[2].weight)


def test_seed_changes_the_run_and_same_seed_repeats():
    results = []
    for seed in (0, 0, 1):
        network = tiny_unet()
        trainer, _, _ = make_trainer(network, max_epochs=1, seed=seed)
        trainer.run()
        results.append(network.out[2].weight.detach().clone())
    assert torch.equal(results[0], results[1])
    assert not torch.equal(results[0], results[2])


def test_iteration_generator_mixes_seed_rank_iteration():
    draws = {
        key: torch.randn(4, generator=iteration_generator(*key[:2], rank=key[2])) for key in
        [(0, 1, 0), (0, 2, 0), (1, 1, 0), (0, 1, 1)]
    }
    assert torch.equal(draws[(0, 1, 0)], torch.randn(4, generator=iteration_generator(0, 1)))
    values = list(draws.values())
    assert all(not torch.equal(values[i], values[j]) for i in range(4) for j in range(i + 1, 4))
    with pytest.raises(ValueError, match="iteration"):
        iteration_generator(0, -1)


def test_training_loss_draws_t_then_noise_from_the_generator():
    network = tiny_unet()
    images = torch.cat([d["image"][None] for d in blob_images(2)])
    loss = WaveletDiffusionTrainingLoss()(network, images, torch.Generator().manual_seed(5))
    generator = torch.Generator().manual_seed(5)
    t = torch.randint(0, 1000, (2,), generator=generator)
    expected = wavelet_diffusion_loss(wdm_diffusion(), network, images, t, generator=generator)["loss"]
    assert torch.equal(loss, expected)


def test_bad_arguments():
    with pytest.raises(ValueError, match="seed"):
        DiffusionTrainingStep(seed=-1)
    with pytest.raises(ValueError, match="max_grad_norm"):
        DiffusionTrainingStep(max_grad_norm=0)
    with pytest.raises(ValueError, match="images"):
        WaveletDiffusionTrainingLoss()(tiny_unet(), torch.zeros(1, 1, 7, 8, 8), None)
    with pytest.raises(ValueError, match="x0-predicting"):
        from medgen.diffusion.gaussian import GaussianDiffusion
        from medgen.diffusion.schedules import linear_beta_schedule

        WaveletDiffusionTrainingLoss(GaussianDiffusion(linear_beta_schedule(1000), "epsilon", "fixed_large"))
