"""medgen.zoo.checks: every repository bundle passes `medgen zoo verify` offline (MONAI model-zoo's checks, every
network, TorchScript, smoke run); broken bundles fail the right check; the documented TorchScript outcome."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from monai.data import load_net_with_metadata

from medgen.zoo import bundle_networks, build_network, export_torchscript, read_metadata, verify_bundle
from tests.zoo.conftest import BUNDLE_NAMES, BUNDLES_DIR, copy_bundle


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_every_bundle_passes_zoo_verify(name):
    report = verify_bundle(BUNDLES_DIR / name, trust=True)
    assert report.ok, str(report)
    specs = bundle_networks(read_metadata(BUNDLES_DIR / name))
    expected = ["layout", "version", "networks", "metadata", "large_files"]
    for spec in specs:
        expected += [f"weights:{spec.net_id}", f"net_in_out:{spec.net_id}", f"torchscript:{spec.net_id}"]
    assert [c.name for c in report.checks] == expected + ["smoke"]
    assert all(c.passed is True for c in report.checks), str(report)


def network_cases() -> list[tuple[str, str]]:
    return [(name, spec.net_id) for name in BUNDLE_NAMES for spec in bundle_networks(read_metadata(BUNDLES_DIR / name))]


@pytest.mark.parametrize("name, net_id", network_cases())
def test_documented_torchscript_outcome(tmp_path: Path, name: str, net_id: str):
    """Every network exports by tracing (metadata 'torchscript': 'trace'; the export itself is a check of
    test_every_bundle_passes_zoo_verify) and none by scripting (docs/zoo.md says why)."""
    bundle = BUNDLES_DIR / name
    meta = read_metadata(bundle)
    (spec,) = [s for s in bundle_networks(meta) if s.net_id == net_id]
    assert spec.torchscript == "trace"
    meta_file = tmp_path / "metadata.json"
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(Exception):  # noqa: B017 (TorchScript's compiler raises several error types)
        torch.jit.script(build_network(bundle, spec, meta_file))


def test_exported_torchscript_is_a_monai_torchscript_bundle(tmp_path: Path):
    bundle = BUNDLES_DIR / "hfssde_mri"
    meta = read_metadata(bundle)
    (spec,) = bundle_networks(meta)
    assert export_torchscript(bundle, spec, bundle / "models" / "model_ema.pt", tmp_path / "net.ts") <= 1e-4
    module, meta_values, extra = load_net_with_metadata(str(tmp_path / "net.ts"), more_extra_files=["inference.json"])
    assert meta_values["version"] == meta["version"]
    assert json.loads(extra["inference.json"]) == json.loads((bundle / "configs" / "inference.json").read_text())
    x, t = torch.rand(2, 2, 32, 32), torch.tensor([0.3, 0.7])  # another batch size and image size than traced
    with torch.no_grad():
        reference = _eager(bundle, spec, tmp_path)(x, t)
        torch.testing.assert_close(module(x, t), reference, rtol=1e-4, atol=1e-4 * float(reference.abs().max()))


def _eager(bundle: Path, spec, tmp_path: Path) -> torch.nn.Module:
    from medgen.networks.checkpoint import load_state_dict_checked, read_checkpoint

    meta_file = tmp_path / "metadata.json"
    meta_file.write_text(json.dumps(read_metadata(bundle)))
    network = build_network(bundle, spec, meta_file)
    return load_state_dict_checked(network, read_checkpoint(bundle / "models" / "model_ema.pt")).eval()


def failing(report) -> dict[str, str]:
    return {c.name: c.detail for c in report.checks if c.passed is False}


def test_broken_bundles_fail_the_right_check(tmp_path: Path):
    bundle = copy_bundle("wdm_brain_mri", tmp_path)
    meta_path = bundle / "configs" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    assert verify_bundle(bundle, smoke=False, torchscript=False, trust=True).ok

    broken = json.loads(json.dumps(meta))
    broken["network_data_format"]["outputs"]["pred"]["num_channels"] = 4
    broken["version"] = "0.1.2"
    meta_path.write_text(json.dumps(broken))
    failed = failing(verify_bundle(bundle, smoke=False, torchscript=False, trust=True))
    assert set(failed) == {"version", "net_in_out:network_def"}
    assert "changelog" in failed["version"] and "output channel number `8`" in failed["net_in_out:network_def"]

    broken = json.loads(json.dumps(meta))
    del broken["authors"]
    meta_path.write_text(json.dumps(broken))
    assert "authors" in failing(verify_bundle(bundle, smoke=False, torchscript=False, trust=True))["metadata"]

    meta_path.write_text(json.dumps(meta))
    (bundle / "LICENSE").unlink()
    torch.save({"unexpected": torch.zeros(1)}, bundle / "models" / "model.pt")
    failed = failing(verify_bundle(bundle, smoke=False, torchscript=False, trust=True))
    assert set(failed) == {"layout", "large_files", "weights:network_def"}
    assert "LICENSE" in failed["layout"] and "sha256" in failed["large_files"]
    assert "missing keys" in failed["weights:network_def"]


def test_a_failing_smoke_run_is_reported(tmp_path: Path):
    bundle = copy_bundle("wdm_brain_mri", tmp_path)
    meta_path = bundle / "configs" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["smoke_test"]["overrides"]["sampler"] = "euler"  # not a sampler of the WDM inferer
    meta_path.write_text(json.dumps(meta))
    report = verify_bundle(bundle, torchscript=False, trust=True)
    assert failing(report).keys() == {"smoke"} and "exited with" in failing(report)["smoke"]
