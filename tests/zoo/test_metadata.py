"""medgen.zoo.metadata: offline schema validation of every bundle, the networks block, fake network inputs."""

from __future__ import annotations

import copy
import hashlib
import urllib.request

import pytest
import torch

from medgen.zoo import SCHEMA_PATH, bundle_networks, example_inputs, merge_variant, read_metadata, validate_metadata
from medgen.zoo.metadata import SCHEMA_SHA256, NetworkSpec
from tests.zoo.conftest import BUNDLE_NAMES, BUNDLES_DIR


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to download during the test fails."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[:1]}")

    monkeypatch.setattr(urllib.request, "urlretrieve", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr("monai.apps.utils.urlretrieve", refuse)


def test_shipped_schema_is_the_pinned_one():
    assert hashlib.sha256(SCHEMA_PATH.read_bytes()).hexdigest() == SCHEMA_SHA256


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_every_bundle_metadata_validates_offline(name, offline):
    meta = read_metadata(BUNDLES_DIR / name)
    assert meta["schema"].endswith("meta_schema_20240725.json")  # model-zoo's CI validates against it online
    validate_metadata(BUNDLES_DIR / name / "configs" / "metadata.json")
    assert meta["version"] in meta["changelog"]


def test_official_variant_metadata_validates_offline(offline):
    meta = read_metadata(BUNDLES_DIR / "tpdm_brain_mri", variant="official")
    assert meta["version"] == "1.0.0+official" and "0.1.1" in meta["changelog"] and "1.0.0+official" in meta["changelog"]
    validate_metadata(meta)
    (spec,) = bundle_networks(meta)
    assert spec.weights == ("models/bmr_zsr_256_yz.pt", "models/bmr_zsr_256_xy.pt")
    assert spec.config_files == ("configs/inference.json", "configs/inference_official_256.json")
    assert meta["network_data_format"]["inputs"]["sigma"]["value_range"] == [0.01, 378.0]


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_every_bundle_has_an_official_variant_whose_weights_its_configs_read(name, offline):
    meta = read_metadata(BUNDLES_DIR / name, variant="official")
    assert meta["version"] == "1.0.0+official" and meta["version"] in meta["changelog"]
    validate_metadata(meta)
    for spec in bundle_networks(meta):
        assert len(spec.config_files) == 2 and spec.config_files[0] == "configs/inference.json"
        official_config = (BUNDLES_DIR / name / spec.config_files[1]).read_text()
        for weight in spec.weights:  # the official config reads each weight file the metadata declares
            assert weight.removeprefix("models/") in official_config, (name, weight)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m.pop("required_packages_version"), "required_packages_version"),
        (lambda m: m.update(version="v1"), "version"),
        (lambda m: m["network_data_format"]["inputs"]["image"].update(value_range=[0, 1, 2]), "value_range"),
        (lambda m: m["network_data_format"]["outputs"].pop("pred"), "pred"),
        (lambda m: m["network_data_format"]["inputs"]["image"].pop("dtype"), "dtype"),
    ],
)
def test_invalid_metadata_is_refused_naming_the_field(edit, message, offline):
    meta = copy.deepcopy(read_metadata(BUNDLES_DIR / "wdm_brain_mri"))
    edit(meta)
    with pytest.raises(ValueError, match=message):
        validate_metadata(meta)


def test_merge_variant_needs_its_own_version():
    base = {"version": "0.1.1", "changelog": {"0.1.1": "a"}, "task": "t"}
    merged = merge_variant(base, {"version": "1.0.0+official", "changelog": {"1.0.0+official": "b"}, "task": "u"})
    assert merged["task"] == "u" and list(merged["changelog"]) == ["1.0.0+official", "0.1.1"]
    with pytest.raises(ValueError, match="own 'version'"):
        merge_variant(base, {"version": "0.1.1"})
    with pytest.raises(ValueError, match="own 'version'"):
        merge_variant(base, {"task": "x"})


def test_bundle_networks_defaults_and_errors():
    assert bundle_networks({"network_data_format": {}}) == [NetworkSpec("network_def")]
    meta = read_metadata(BUNDLES_DIR / "sdm_ctca")
    specs = bundle_networks(meta)
    assert [s.net_id for s in specs] == ["lowres_network_def", "highres_network_def"]
    assert specs[1].data_format == "highres_network_data_format" and specs[1].weights == ("models/highres.pt",)
    with pytest.raises(ValueError, match="unknown keys"):
        bundle_networks({"networks": {"network_def": {"weight": ["a.pt"]}}})
    with pytest.raises(ValueError, match="not in the metadata"):
        bundle_networks({"networks": {"network_def": {"data_format": "missing_block"}}})
    with pytest.raises(ValueError, match="list of paths"):
        bundle_networks({"network_data_format": {}, "networks": {"network_def": {"weights": "models/a.pt"}}})


def test_example_inputs_follow_the_data_format():
    meta = read_metadata(BUNDLES_DIR / "sdm_ctca")
    image, extra = example_inputs(meta["highres_network_data_format"], n=2)
    assert image.shape == (1, 1, 8, 8, 8) and image.dtype == torch.float32
    assert set(extra) == {"timesteps", "y", "r"}
    assert extra["timesteps"].dtype == torch.int64 and extra["timesteps"].tolist() == [500]  # middle of [0, 999]
    assert extra["y"].shape == (1, 10, 8, 8, 8) and -1 <= float(extra["y"].min()) < float(extra["y"].max()) <= 1
    assert extra["r"].shape == (1, 2, 8, 8, 8)
    _, other = example_inputs(meta["highres_network_data_format"], n=2, seed=1)
    assert other["timesteps"].tolist() != [500] and 0 <= int(other["timesteps"]) <= 999
    tpdm = read_metadata(BUNDLES_DIR / "tpdm_brain_mri")["network_data_format"]
    _, extra = example_inputs(tpdm, n=4)
    assert extra["sigma"].tolist() == [pytest.approx((0.01 + 15.0) / 2)]
