"""medgen.engines.training.curves: the loss of every iteration recorded, drawn, and carried through a checkpoint."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from medgen.engines.training.curves import LossCurve, tensorboard_available


def test_records_draws_and_round_trips(tmp_path):
    curve = LossCurve(tmp_path / "curve" / "loss.png", window=2)
    assert curve.draw() is None  # nothing recorded yet
    for iteration, loss in enumerate([4.0, 2.0, 1.0], start=1):
        curve.record(SimpleNamespace(state=SimpleNamespace(iteration=iteration, output={"loss": torch.tensor(loss)})))
    assert curve.iterations == [1, 2, 3] and curve.losses == [4.0, 2.0, 1.0]
    path = curve.draw()
    assert path == tmp_path / "curve" / "loss.png" and Image.open(path).size == (600, 360)
    copy = LossCurve(None)
    copy.load_state_dict(curve.state_dict())
    assert copy.losses == curve.losses and copy.iterations == curve.iterations and copy.draw() is None
    assert isinstance(tensorboard_available(), bool)
    with pytest.raises(ValueError, match="window"):
        LossCurve(None, window=0)
