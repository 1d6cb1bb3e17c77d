"""End to end: the Ego4D future-hand recipe through ``vidlit.cli.main`` on synthetic clips."""

import csv
import json
from pathlib import Path

import pytest
import torch

from vidlit.cli import main
from vidlit.data.ego4d_fhp import read_hand_annotations
from vidlit.data.synth.ego4d_fhp import write_ego4d_fhp

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

RECIPE = str(Path(__file__).resolve().parents[2] / "recipes" / "ego4d_fhp.yaml")
QUIET = """
trainer:
  max_epochs: 8
  callbacks:
    - class_path: vidlit.callbacks.ResumableCheckpoint
      init_args: {monitor: val/mean_disp, mode: min, save_last: true}
"""


def _mean_keypoint_baseline(root: Path) -> float:
    """Mean displacement of predicting the training set's mean key points (the figure to beat)."""
    train = read_hand_annotations(root / "fho_hands_train.json")
    val = read_hand_annotations(root / "fho_hands_val.json")
    hands = torch.stack([s.hands for s in train])
    valid = torch.stack([s.valid for s in train])[..., None].float()
    mean = (hands * valid).sum(0) / valid.sum(0).clamp(min=1)
    dist = torch.cat([(s.hands - mean).norm(dim=-1)[s.valid] for s in val])
    return float(dist.mean())


def test_recipe_forecasts_hands(tmp_path):
    """Val mean displacement must fall below 0.5 x the train-mean-key-point baseline in 8 epochs.

    Chance: predicting the training set's mean key points scores about 7.8 px on this data
    (128 train clips, 64 px frames), the frame centre about 13 px; the threshold (about 3.9 px)
    needs the model to find the hands and the object in the clip. The recipe's soft-argmax readout
    reaches about 2.4-2.7 px here (the earlier pooled-query readout stayed near 8 px after 8 epochs).
    """
    root = write_ego4d_fhp(tmp_path / "data", num_train=128, num_val=24, num_test=2)
    baseline = _mean_keypoint_baseline(root)
    quiet = tmp_path / "quiet.yaml"
    quiet.write_text(QUIET)
    common = ["--config", RECIPE, "--config", str(quiet), "--data.init_args.root", str(root)]
    main(["fit", *common, "--trainer.default_root_dir", str(tmp_path / "runs")])
    (run,) = (tmp_path / "runs").glob("version_*")
    rows = [r for r in csv.DictReader((run / "metrics.csv").open()) if r.get("val/mean_disp")]
    assert float(rows[-1]["val/mean_disp"]) < 0.5 * baseline, (baseline, rows[-1])

    submission = tmp_path / "hands.json"
    main(
        [
            "predict", *common, "--data.init_args.predict_annotations", "fho_hands_test_unannotated.json",
            "--trainer.default_root_dir", str(tmp_path / "runs"), "--ckpt_path", "last",
            "--submission.path", str(submission),
        ]
    )  # fmt: skip
    doc = json.loads(submission.read_text())
    keys = {s.key for s in read_hand_annotations(root / "fho_hands_test_unannotated.json")}
    assert set(doc) == keys and all(len(v) == 20 for v in doc.values())
