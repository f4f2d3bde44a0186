"""Every bundle's configs/multi_gpu_inference.json: parsed with its inference.json (fast), and TPDM's run with
``torchrun --nproc_per_node 2`` on CPU gloo at 4 steps, equal to the single-process run (slow)."""

from __future__ import annotations

import inspect
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai.bundle import ConfigParser

from medgen.inferers.base import SamplingInferer

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"
NAMES = sorted(p.parent.parent.name for p in BUNDLES.glob("*/configs/multi_gpu_inference.json"))


def test_every_bundle_has_a_multi_gpu_inference_config():
    assert NAMES == sorted(p.parent.parent.name for p in BUNDLES.glob("*/configs/inference.json"))
    assert len(NAMES) == 7


@pytest.mark.parametrize("bundle", NAMES)
def test_multi_gpu_inference_config_parses_and_shards_every_inferer(bundle: str):
    configs = BUNDLES / bundle / "configs"
    overrides = json.loads((configs / "multi_gpu_inference.json").read_text())
    parser = ConfigParser()
    parser.read_config([str(configs / "inference.json"), str(configs / "multi_gpu_inference.json")])
    sharded = [key.split("#")[0] for key, value in overrides.items() if key.endswith("#shard") and value is True]
    assert sharded, "no inferer is sharded"
    for name in sharded:
        config = parser.get(name)
        assert config["shard"] is True and config["checkpoint_dir"] is None and config["checkpoint_every"] == 0
        target = config["_target_"].rsplit(".", 1)
        cls = getattr(__import__(target[0], fromlist=[target[1]]), target[1])
        # the option reaches the inferer: its keywords hand ``shard`` on to SamplingInferer, whose signature has it
        assert issubclass(cls, SamplingInferer) and cls.options({"shard": True}) == {"shard": True}, cls
        assert "shard" in inspect.signature(SamplingInferer).parameters
    assert parser.get("evaluator#val_handlers") == "$@handlers if dist.get_rank() == 0 else []"
    assert parser.get("initialize")[0].startswith("$dist.is_initialized() or dist.init_process_group")
    assert parser.get("run") == ["$@edge.check() if dist.get_rank() == 0 else None", "$@evaluator.run()",
                                 "$dist.get_rank() == 0 and @edge.finish()"]
    assert parser.get("finalize") == ["$dist.is_initialized() and dist.destroy_process_group()"]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
                    reason="torchrun not installed")
def test_tpdm_torchrun_two_ranks_equals_one_process(tmp_path: Path):
    bundle = BUNDLES / "tpdm_brain_mri"
    configs = bundle / "configs"
    common = ["--bundle_root", str(bundle), "--steps", "4", "--seed", "3", "--progress", "False"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(configs / "inference.json"), *common,
              "--output_dir", str(tmp_path / "single")]
    torchrun = str(Path(sys.executable).parent / "torchrun")
    files = f"['{configs / 'inference.json'}','{configs / 'multi_gpu_inference.json'}']"
    sharded = [torchrun if Path(torchrun).exists() else "torchrun", "--nproc_per_node", "2", "-m", "monai.bundle",
               "run", "--config_file", files, *common, "--output_dir", str(tmp_path / "sharded")]
    for command in (single, sharded):
        result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
    one = nib.load(tmp_path / "single" / "tpdm_zsr_seed3.nii.gz").get_fdata()
    two = nib.load(tmp_path / "sharded" / "tpdm_zsr_seed3.nii.gz").get_fdata()
    np.testing.assert_allclose(two, one, rtol=0, atol=1e-5 * np.abs(one).max())
    assert sorted(p.name for p in (tmp_path / "sharded").iterdir()) == sorted(
        p.name for p in (tmp_path / "single").iterdir()
    )
