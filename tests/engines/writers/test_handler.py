"""medgen.engines.writers.handler: WriteResults takes the writer's arguments from the evaluator's output and batch."""

from __future__ import annotations

import json

import numpy as np
import torch
from monai.data import MetaTensor
from monai.engines import SupervisedEvaluator

from medgen.engines.writers.handler import WriteResults
from medgen.engines.writers.reconstruction import ReconstructionWriter


def test_a_writer_as_the_evaluator_handler(tmp_path):
    volume = torch.rand(1, 1, 12, 12, 12)
    batch = {"image": MetaTensor(volume, affine=torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0]))), "label": volume,
             "smoothed": volume * 0.5}
    writer = ReconstructionWriter(tmp_path, "demo")
    handler = WriteResults(writer, {"volume": "pred", "reference": "label", "input": "image"},
                           baselines={"smoothed": "smoothed", "absent": "nothing"})
    evaluator = SupervisedEvaluator(device=torch.device("cpu"), val_data_loader=[batch], network=torch.nn.Identity(),
                                    val_handlers=[handler], decollate=False)
    evaluator.run()
    metrics = json.loads((tmp_path / "demo_metrics.json").read_text())
    assert metrics["metrics"]["psnr"] == float("inf") or metrics["metrics"]["mse"] == 0.0
    assert set(metrics["baselines"]) == {"smoothed"} and handler.results[0] == metrics
    np.testing.assert_allclose(np.diag(metrics["affine"]), [2.0, 2.0, 2.0, 1.0])
    assert writer.written == [tmp_path / "demo.nii.gz", tmp_path / "demo.png", tmp_path / "demo_metrics.json"]
