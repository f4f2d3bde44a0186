"""Tests for medgen.distributed: shares, all-gathers, and sharded inference over 2 gloo processes equal to one process.

The 2-process run (torch.multiprocessing spawn, gloo on a file store) runs every case once per rank and saves each
rank's results; the parent compares them with the same cases run in this process without sharding. The cases:
a chunked map with its gradient (uneven shares), TPDM z-SR with DPS (slices of each minibatch split), PaDIS DPS on
sparse-view CT (patches split, gradients through the chunked map), and the SDM slab sampler (slabs split).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from medgen.diffusion.chunked import chunked_map
from medgen.distributed import Sharding, as_sharding
from medgen.inferers.patch import PatchDiffusionInferer
from medgen.inferers.perpendicular import PerpendicularSliceInferer
from medgen.inferers.slab import SlabPatchInferer
from medgen.networks.convert import from_official
from medgen.physics.ct import ParallelBeamCT
from medgen.physics.zaxis import ZAxisAverage
from tests.conftest import load_parity
from tests.inferers.test_slab import labels_of, tiny_sdm

WORLD = 2


def _conv_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.Tanh(), torch.nn.Conv2d(4, 1, 3, padding=1))


def case_chunked_map(shard: object) -> dict[str, torch.Tensor]:
    """Output and input gradient of a chunked map over 7 items (shares of 4 and 3, chunks of 3)."""
    net = _conv_net()
    x = torch.randn(7, 1, 6, 6, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    out = chunked_map(net, x, chunk_size=3, sharding=as_sharding(shard))
    (grad,) = torch.autograd.grad(out.square().sum(), x)
    return {"out": out.detach(), "grad": grad}


def case_tpdm(shard: object) -> dict[str, torch.Tensor]:
    tiny = load_parity("ncsnpp_tiny")
    net = from_official("score_sde_ncsnpp", tiny["state_dict"], tiny["config"])
    volume = torch.rand(1, 1, 16, 16, 16, generator=torch.Generator().manual_seed(2))
    inferer = PerpendicularSliceInferer("zsr", factor=4, steps=3, batch_size=8, seed=0, progress=False, shard=shard)
    return {"volume": inferer(ZAxisAverage(4, axis=-1)(volume), net).as_tensor()}


def case_padis(shard: object) -> dict[str, torch.Tensor]:
    tiny = load_parity("padis_songunet_tiny")
    net = from_official("padis_edm", tiny["state_dict"], tiny["config"])
    op = ParallelBeamCT.padis(image_size=16, views=6, num_detectors=32)
    image = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    inferer = PatchDiffusionInferer(op, patch_size=8, pad=8, num_steps=3, inner_iterations=2, sigma_min=0.01,
                                    sigma_max=1.0, seed=0, max_batch=3, progress=False, shard=shard)
    return {"image": inferer(op(image), net).as_tensor()}


def case_sdm(shard: object) -> dict[str, torch.Tensor]:
    net = tiny_sdm()
    low_res = torch.randn(1, 1, 4, 4, 8, generator=torch.Generator().manual_seed(5))
    inferer = SlabPatchInferer(slab_depth=8, overlap=4, timestep_respacing=3, guidance_scale=1.5, seed=11,
                               progress=False, shard=shard)
    return {"volume": inferer(labels_of((1, 1, 8, 8, 16)), net, reference=low_res).as_tensor()}


CASES: dict[str, Callable[[object], dict[str, torch.Tensor]]] = {
    "chunked_map": case_chunked_map,
    "tpdm": case_tpdm,
    "padis": case_padis,
    "sdm": case_sdm,
}


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        results = {name: case(True) for name, case in CASES.items()}
        results["shares"] = {"share": torch.tensor([Sharding("world").share(5).start, Sharding("world").share(5).stop])}
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def sharded_results(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, dict[str, torch.Tensor]]]:
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    out_dir = tmp_path_factory.mktemp("sharded")
    mp.spawn(_worker, args=(str(out_dir / "store"), str(out_dir)), nprocs=WORLD, join=True)
    return [torch.load(out_dir / f"rank{r}.pt") for r in range(WORLD)]


@pytest.mark.parametrize("name", list(CASES))
def test_sharded_run_equals_single_process(name: str, sharded_results) -> None:
    single = CASES[name](False)
    for rank, results in enumerate(sharded_results):
        for key, expected in single.items():
            got = results[name][key]
            scale = expected.abs().max().item()
            torch.testing.assert_close(got, expected, rtol=0, atol=1e-5 * max(scale, 1.0), msg=f"{name} {key} rank {rank}")


def test_each_rank_owns_a_contiguous_share(sharded_results) -> None:
    assert [r["shares"]["share"].tolist() for r in sharded_results] == [[0, 3], [3, 5]]


def test_world_of_one_and_options() -> None:
    sharding = as_sharding(False)
    assert not sharding.active and sharding.share(5) == slice(0, 5)
    x = torch.arange(5.0)
    assert torch.equal(sharding.all_gather(x, 5), x)
    assert not as_sharding(True).active  # no process group initialised: a world of one
    with pytest.raises(ValueError, match="local must hold"):
        sharding.all_gather(x[:3], 5)
    with pytest.raises(TypeError, match="shard must be"):
        as_sharding("yes")
    with pytest.raises(RuntimeError, match="torchrun"):
        Sharding("world")
    with pytest.raises(ValueError, match="group must be"):
        Sharding("everyone")
