"""End to end: recipes/loris_dance.yaml through ``vidlit.cli.main`` on synthetic LORIS-layout data."""

import json
from pathlib import Path

import pytest
import soundfile

from vidlit.cli import main
from vidlit.data.synth.loris import write_loris

pytestmark = pytest.mark.slow

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "loris_dance.yaml"
HEAD = "--model.init_args.head.init_args."


def test_fit_then_predict_writes_wavs_and_metrics(tmp_path, one_thread):
    root = write_loris(tmp_path / "data", num_train=4, num_test=2, sample_rate=4000, feature_dim=1024)
    runs = tmp_path / "runs"
    common = ["--config", str(RECIPE), "--data.init_args.root", str(root), "--trainer.default_root_dir", str(runs)]
    quiet = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    main(["fit", *common, *quiet, "--trainer.max_epochs", "1", "--trainer.check_val_every_n_epoch", "1",
          f"{HEAD}sampling_steps", "2", f"{HEAD}progress", "false"])  # fmt: skip
    (metrics_csv,) = runs.glob("version_*/metrics.csv")
    assert "val/BHS" in metrics_csv.read_text()
    out = tmp_path / "gen" / "loris.json"
    main(["predict", *common, *quiet, "--ckpt_path", "last", "--submission.path", str(out),
          f"{HEAD}sampling_steps", "3", f"{HEAD}guidance_scale", "1.5"])  # fmt: skip
    document = json.loads(out.read_text())
    assert set(document["metrics"]) == {"BCS", "BHS", "CSD", "HSD", "F1"}
    assert len(document["clips"]) == 2
    for clip in document["clips"]:
        wave, rate = soundfile.read(out.parent / clip["wav"])
        assert rate == 4000 and wave.shape == (2**14,) and 0 <= clip["BHS"] <= 1
