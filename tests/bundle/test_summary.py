"""medgen.bundle.summary: files, settings and the metrics of the output and of every baseline."""

from __future__ import annotations

from medgen.bundle.summary import format_summary


def test_summary_lists_files_settings_and_metrics():
    result = {"steps": 200, "seed": 0, "metrics": {"psnr": 25.731, "ssim": {"mean": 0.859}},
              "baselines": {"pseudo_inverse": {"psnr": 20.56, "ssim": {"mean": 0.66}}, "empty": {}}}
    text = format_summary("tpdm_brain_mri", ["out/a.nii.gz", "out/a.png"], result, 46.04, resumed=True)
    lines = text.splitlines()
    assert lines[0] == "tpdm_brain_mri: finished in 46.0 s (steps 200, seed 0), continuing an interrupted run"
    assert lines[1:4] == ["  2 file(s) written:", "    out/a.nii.gz", "    out/a.png"]
    assert lines[5] == "    output          PSNR  25.73 dB  SSIM 0.8590"
    assert lines[6] == "    pseudo_inverse  PSNR  20.56 dB  SSIM 0.6600" and len(lines) == 7


def test_summary_of_a_training_run_and_of_a_run_without_reference():
    text = format_summary("wdm_brain_mri", ["m.pt"], {"seed": 1, "iterations": 40, "final_loss": 0.012345}, 2.0)
    assert text.splitlines()[0] == "wdm_brain_mri: finished in 2.0 s (seed 1, iterations 40, final_loss 0.01235)"
    assert "against the reference" not in format_summary("x", [], {"metrics": None}, 1.0)
