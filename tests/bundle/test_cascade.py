"""medgen.bundle.cascade: TwoStageInferer hands the resized label map to the first stage and its result to the
second, and runs inside a MONAI SupervisedEvaluator."""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor
from monai.engines import SupervisedEvaluator

from medgen.bundle.cascade import TwoStageInferer


def test_the_first_stage_sees_the_resized_labels_and_conditions_the_second():
    calls = []

    def first(inputs, network):
        calls.append(("first", tuple(inputs.shape), network))
        return inputs * 2.0

    def second(inputs, network, reference=None):
        calls.append(("second", tuple(inputs.shape), network, tuple(reference.shape)))
        return inputs + float(reference.mean())

    labels = MetaTensor(torch.arange(2 * 8 * 8 * 8, dtype=torch.float32).reshape(2, 1, 8, 8, 8) % 3)
    cascade = TwoStageInferer(first, second, lowres_size=(4, 4, 4))
    out = cascade(labels, {"lowres": "L", "highres": "H"})
    assert calls == [("first", (2, 1, 4, 4, 4), "L"), ("second", (2, 1, 8, 8, 8), "H", (2, 1, 4, 4, 4))]
    torch.testing.assert_close(out["lowres_labels"][0, 0], labels[0, 0, ::2, ::2, ::2])  # nearest
    torch.testing.assert_close(out["lowres"], out["lowres_labels"] * 2.0)
    assert set(out) == {"highres", "lowres", "lowres_labels"}
    with pytest.raises(TypeError, match=r"network lacks \['highres'\]"):
        cascade(labels, {"lowres": "L"})
    with pytest.raises(ValueError, match="lowres_size"):
        TwoStageInferer(first, second, lowres_size=(4, 0, 4))


def test_cascade_in_a_supervised_evaluator():
    cascade = TwoStageInferer(lambda x, net: net(x), lambda x, net, reference: net(x) + reference.mean(), (2, 2, 2))
    network = torch.nn.ModuleDict({"lowres": torch.nn.Identity(), "highres": torch.nn.Identity()})
    data = [{"image": torch.ones(1, 1, 4, 4, 4)}]
    evaluator = SupervisedEvaluator(device=torch.device("cpu"), val_data_loader=data, network=network,
                                    inferer=cascade, decollate=False)
    evaluator.run()
    pred = evaluator.state.output["pred"]
    assert pred["highres"].shape == (1, 1, 4, 4, 4) and float(pred["highres"].max()) == 2.0
