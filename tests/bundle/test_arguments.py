"""medgen.bundle.arguments: undeclared keys refused with the closest declared key, keys found through
monai.bundle.run (keyword arguments and args_file), nothing checked outside a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from monai.bundle import run

from medgen.bundle.arguments import check_keys, closest_key, given_arguments, split_id
from medgen.bundle.errors import BundleInputError


def config(tmp_path: Path, content: dict, name: str = "c.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(content))
    return str(path)


def test_split_id_and_closest_key():
    assert split_id("writer#info#steps") == ["writer", "info", "steps"]
    assert split_id("a::b") == ["a", "b"] and split_id("steps") == ["steps"]
    assert closest_key("stpes", ["steps", "seed", "sigma_max"]) == "steps"
    assert closest_key("Sigma-Max".replace("-", "_"), ["steps", "sigma_max"]) == "sigma_max"
    assert closest_key("zzz", ["steps", "seed"]) is None


def test_check_keys_names_the_unknown_key_and_the_closest_declared_one(tmp_path):
    base = config(tmp_path, {"steps": 4, "seed": 0, "writer": {"info": {"steps": "@steps"}}, "run": []})
    variant = config(tmp_path, {"acceleration": 8.0}, "variant.json")
    check_keys([base], {"steps": 2, "seed": 1, "writer#info#steps": 3, "_meta_#version": "1"})
    check_keys([base, variant], {"acceleration": 4.0})
    with pytest.raises(BundleInputError, match=r"unknown key 'stpes' \(--stpes 2\); did you mean 'steps'\?"):
        check_keys([base], {"stpes": 2})
    with pytest.raises(BundleInputError, match="unknown key 'acceleration'"):
        check_keys([base], {"acceleration": 4.0})  # declared only by the variant
    with pytest.raises(BundleInputError, match=r"unknown key 'writer#info#stepz'.*did you mean 'steps'"):
        check_keys([base], {"writer#info#stepz": 1})
    with pytest.raises(BundleInputError, match="the keys c.json declares are: run, seed, steps, writer"):
        check_keys([base], {"qqqqq": 1})


def test_run_refuses_an_unknown_key_before_anything_runs(tmp_path):
    marker = tmp_path / "ran"
    content = {
        "steps": 4,
        "edge": {"_target_": "medgen.bundle.BundleEdge", "bundle": "demo", "output_dir": str(tmp_path / "out")},
        "run": ["$@edge.check()", f"$open({str(marker)!r}, 'w').close()"],
    }
    path = config(tmp_path, content)
    run(config_file=path, steps=2)  # declared key: runs
    assert marker.exists()
    marker.unlink()
    with pytest.raises(RuntimeError) as error:
        run(config_file=path, stpes=2)
    assert "did you mean 'steps'" in str(error.value.__cause__) and not marker.exists()
    args = tmp_path / "args.json"
    args.write_text(json.dumps({"stepz": 3}))
    with pytest.raises(RuntimeError) as error:
        run(config_file=path, args_file=str(args))
    assert "unknown key 'stepz'" in str(error.value.__cause__)


def test_given_arguments_outside_a_run_is_none_and_inside_holds_files_overrides_and_config(tmp_path):
    assert given_arguments() is None
    seen = {}

    def record() -> None:
        seen["given"] = given_arguments()

    import builtins

    builtins._medgen_test_record = record  # reachable from the config expression
    try:
        path = config(tmp_path, {"steps": 4, "run": ["$__import__('builtins')._medgen_test_record()"]})
        run(config_file=path, steps=7)
    finally:
        del builtins._medgen_test_record
    given = seen["given"]
    assert given.config_files == (path,) and given.overrides == {"steps": 7} and given.config["steps"] == 7
