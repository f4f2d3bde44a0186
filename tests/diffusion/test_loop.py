from __future__ import annotations

import pytest
import torch

import medgen.diffusion.loop as loop_module
from monai.data import MetaTensor

from medgen.diffusion.loop import CHECKPOINT_NAME, SamplingLoop, make_generator, tensor_digest
from tests.inferers.conftest import run_docstring_example


class _Interrupt(RuntimeError):
    pass


def _make_step(generator, fail_at=None):
    def step(i, state):
        if fail_at is not None and i == fail_at:
            raise _Interrupt(f"interrupted at {i}")
        noise = torch.randn(state["x"].shape, generator=generator)
        return {"x": 0.9 * state["x"] + 0.3 * noise, "count": state["count"] + 1, "tag": "walk"}

    return step


def _initial():
    return {"x": torch.zeros(2, 3), "count": 0, "tag": "walk"}


def test_make_generator_matches_global_seed():
    torch.manual_seed(123)
    expected = torch.randn(4, 5)
    generator = make_generator(123, "cpu")
    assert generator.device.type == "cpu"
    assert torch.equal(torch.randn(4, 5, generator=generator), expected)
    assert make_generator(None, "cpu") is None
    with pytest.raises(TypeError, match="seed"):
        make_generator(1.5, "cpu")


def test_run_without_checkpoint_calls_every_step():
    calls = []

    def step(i, state):
        calls.append(i)
        return {"x": state["x"] + i}

    out = SamplingLoop(5, progress=False).run({"x": torch.zeros(1)}, step)
    assert calls == [0, 1, 2, 3, 4]
    assert out["x"].item() == 10
    calls.clear()
    SamplingLoop(5, progress=False).run({"x": torch.zeros(1)}, step, start_step=3)
    assert calls == [3, 4]


def test_resume_after_interruption_is_bit_identical(tmp_path):
    fingerprint = {"inferer": "test", "seed": 7, "shape": [2, 3]}
    reference = SamplingLoop(10, progress=False).run(_initial(), _make_step(make_generator(7, "cpu")))

    ckpt = tmp_path / "run"
    loop = SamplingLoop(10, progress=False, checkpoint_dir=ckpt, checkpoint_every=3, fingerprint=fingerprint)
    generator = make_generator(7, "cpu")
    with pytest.raises(_Interrupt):
        loop.run(_initial(), _make_step(generator, fail_at=7), generator=generator)
    saved = torch.load(ckpt / CHECKPOINT_NAME, weights_only=True)
    assert saved["step"] == 6

    # a fresh process would re-create the generator from the seed: the checkpoint restores its state
    generator = make_generator(7, "cpu")
    calls = []
    step = _make_step(generator)

    def counting_step(i, state):
        calls.append(i)
        return step(i, state)

    resumed = loop.run(_initial(), counting_step, generator=generator)
    assert calls == [6, 7, 8, 9]
    assert torch.equal(resumed["x"], reference["x"])
    assert resumed["count"] == reference["count"] == 10
    assert sorted(p.name for p in ckpt.iterdir()) == [CHECKPOINT_NAME]  # no temporary files left


def test_resume_with_global_rng(tmp_path):
    def step(i, state):
        return {"x": state["x"] + torch.randn(3)}

    torch.manual_seed(5)
    reference = SamplingLoop(6, progress=False).run({"x": torch.zeros(3)}, step)

    loop = SamplingLoop(6, progress=False, checkpoint_dir=tmp_path, checkpoint_every=2)

    def failing(i, state):
        if i == 5:
            raise _Interrupt
        return step(i, state)

    torch.manual_seed(5)
    with pytest.raises(_Interrupt):
        loop.run({"x": torch.zeros(3)}, failing)
    torch.manual_seed(999)  # the checkpoint restores the global RNG state
    assert torch.equal(loop.run({"x": torch.zeros(3)}, step)["x"], reference["x"])


def test_mismatching_fingerprint_raises_and_keeps_file(tmp_path):
    generator = make_generator(0, "cpu")
    SamplingLoop(4, progress=False, checkpoint_dir=tmp_path, checkpoint_every=2, fingerprint={"seed": 0}).run(
        _initial(), _make_step(generator), generator=generator
    )
    before = (tmp_path / CHECKPOINT_NAME).read_bytes()
    other = SamplingLoop(4, progress=False, checkpoint_dir=tmp_path, checkpoint_every=2, fingerprint={"seed": 1})
    with pytest.raises(ValueError, match=str(tmp_path)):
        other.run(_initial(), _make_step(generator), generator=generator)
    longer = SamplingLoop(8, progress=False, checkpoint_dir=tmp_path, checkpoint_every=2, fingerprint={"seed": 0})
    with pytest.raises(ValueError, match="different run"):
        longer.run(_initial(), _make_step(generator), generator=generator)
    assert (tmp_path / CHECKPOINT_NAME).read_bytes() == before


def test_completed_run_is_returned_from_final_checkpoint(tmp_path):
    generator = make_generator(3, "cpu")
    loop = SamplingLoop(5, progress=False, checkpoint_dir=tmp_path)
    first = loop.run(_initial(), _make_step(generator), generator=generator)

    def never(i, state):
        raise AssertionError("no step should run")

    again = loop.run(_initial(), never, generator=make_generator(3, "cpu"))
    assert torch.equal(first["x"], again["x"])


def test_argument_validation(tmp_path):
    with pytest.raises(ValueError, match="num_steps"):
        SamplingLoop(0)
    with pytest.raises(ValueError, match="checkpoint_every"):
        SamplingLoop(3, checkpoint_every=-1)
    with pytest.raises(ValueError, match="checkpoint_dir"):
        SamplingLoop(3, checkpoint_every=2)
    with pytest.raises(TypeError, match="fingerprint"):
        SamplingLoop(3, fingerprint={"net": object()})
    loop = SamplingLoop(3, progress=False, checkpoint_dir=tmp_path)
    with pytest.raises(TypeError, match="'net'"):
        loop.run({"net": object()}, lambda i, s: s)
    with pytest.raises(ValueError, match="start_step"):
        SamplingLoop(3, progress=False).run({}, lambda i, s: s, start_step=4)
    with pytest.raises(TypeError, match="must return a dict"):
        SamplingLoop(3, progress=False).run({}, lambda i, s: None)
    assert not any(tmp_path.iterdir())


def test_tensor_digest():
    x = torch.arange(6.0).reshape(2, 3)
    assert tensor_digest(None) is None
    assert tensor_digest(x) == tensor_digest(MetaTensor(x.clone()))
    assert tensor_digest(x) == tensor_digest(x.t().contiguous().t())  # content, not memory layout
    assert tensor_digest(x) != tensor_digest(x.reshape(3, 2))  # the shape is part of it
    assert tensor_digest(x) != tensor_digest(x.double())  # and the dtype
    assert tensor_digest(torch.zeros(2, dtype=torch.complex64)) != tensor_digest(torch.ones(2, dtype=torch.complex64))


def test_loop_module_docstring_example_runs(tmp_path, monkeypatch):
    """The example of :mod:`medgen.diffusion.loop` runs as written (its checkpoint goes to ``runs/demo``)."""
    monkeypatch.chdir(tmp_path)
    first = run_docstring_example(loop_module.__doc__, "medgen.diffusion.loop")
    assert first["result"]["x"].shape == (1, 1, 8, 8)
    assert (tmp_path / "runs" / "demo" / loop_module.CHECKPOINT_NAME).is_file()
    again = run_docstring_example(loop_module.__doc__, "medgen.diffusion.loop")  # resumes the finished run
    assert torch.equal(again["result"]["x"], first["result"]["x"])
