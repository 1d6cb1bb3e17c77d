"""``vidlit infer`` on one input of every task family prints what ``vidlit predict`` gives for it.

Each test trains a tiny checkpoint (one or two steps) on a small synthetic dataset, runs the
family's ``vidlit predict`` (or, where the family writes no submission document, the Trainer's
predict loop over its data module), and compares ``vidlit infer`` on one of the inputs.
"""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from vidlit.cli import main

pytestmark = pytest.mark.slow

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
FIT = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1"]


def _common(recipe: str, data: Path, runs: Path, *extra: str) -> list[str]:
    return ["--config", str(RECIPES / recipe), "--data.init_args.root", str(data),
            "--trainer.default_root_dir", str(runs), *extra]  # fmt: skip


def _fit(common: list[str], runs: Path) -> Path:
    main(["fit", *common, *FIT])
    return runs / "version_0" / "checkpoints" / "last.ckpt"


def _predict(common: list[str], ckpt: Path, out: Path, *extra: str) -> dict:
    main(["predict", *common, "--ckpt_path", str(ckpt), "--submission.path", str(out), *extra])
    return json.loads(out.read_text())


def _loop_predictions(ckpt: Path) -> dict[str, list[dict]]:
    """The Trainer's predict loop over the checkpoint's own data module: predictions by video id."""
    import lightning as L

    from vidlit.inference import load

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predictor = load(ckpt)
        trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
        batches = trainer.predict(predictor.module, datamodule=predictor.datamodule)
    out: dict[str, list[dict]] = {}
    for batch in batches:
        for p in batch:
            out.setdefault(p["video_id"], []).append(p)
    return out


def _close(a, b, tol=1e-4):
    assert np.asarray(a, dtype=np.float64) == pytest.approx(np.asarray(b, dtype=np.float64), abs=tol)


def test_infer_ego4d_scod(tmp_path, infer):
    from vidlit.data.ego4d_scod import read_scod_annotations
    from vidlit.data.synth.ego4d_scod import write_ego4d_scod

    data = write_ego4d_scod(tmp_path / "data", num_train=8, num_val=4, num_test=2)
    common = _common("ego4d_scod.yaml", data, tmp_path / "runs")
    ckpt = _fit(common, tmp_path / "runs")
    predicted = _predict(common, ckpt, tmp_path / "scod.json")
    coco = json.loads((data / "coco_annotations" / "val.json").read_text())
    ids = {image["file_name"]: image["id"] for image in coco["images"]}
    clip = read_scod_annotations(data / "fho_scod_val.json")[1]
    video = data / "clips" / f"{clip.clip_uid}.mp4"
    printed = infer("--ckpt_path", str(ckpt), str(video), "--frame", str(clip.pnr.clip_frame_number))
    want = [r for r in predicted if r["image_id"] == ids[clip.image_id()]]
    assert len(printed) == len(want) == 5  # one detection per query
    assert {r["image_id"] for r in printed} == {1}
    _close([r["bbox"] for r in printed], [r["bbox"] for r in want])
    _close([r["score"] for r in printed], [r["score"] for r in want], 1e-5)


def test_infer_ego4d_sta(tmp_path, capsys, infer):
    from vidlit.data.ego4d_sta import read_sta_annotations
    from vidlit.data.synth.ego4d_sta import write_ego4d_sta

    data = write_ego4d_sta(tmp_path / "data", num_train=8, num_val=4, num_test=2)
    common = _common("ego4d_sta.yaml", data, tmp_path / "runs")
    ckpt = _fit(common, tmp_path / "runs")
    predicted = _predict(common, ckpt, tmp_path / "sta.json")["results"]
    item = read_sta_annotations(data / "fho_sta_val.json").frames[2]
    video = data / "videos" / f"{item.video_uid}.mp4"
    # the oracle boxes evaluation uses without a detector, as a detections file
    detections = tmp_path / "detections.json"
    boxes = [{"box": b, "score": 1.0} for b in item.boxes.tolist()]
    detections.write_text(json.dumps({item.video_uid: boxes}))
    printed = infer("--ckpt_path", str(ckpt), str(video), "--frame", str(item.frame),
                     "--detections", str(detections))  # fmt: skip
    assert printed["challenge"] == "ego4d_short_term_object_interaction_anticipation"
    got, want = printed["results"][item.video_uid], predicted[item.uid]
    assert len(got) == len(want) > 0
    for g, w in zip(got, want):
        assert (g["noun_category_id"], g["verb_category_id"]) == (
            w["noun_category_id"],
            w["verb_category_id"],
        )
        _close(g["box"], w["box"])
        _close([g["time_to_contact"], g["score"]], [w["time_to_contact"], w["score"]], 1e-5)
    with pytest.raises(SystemExit):
        infer("--ckpt_path", str(ckpt), str(video))  # no boxes to label
    assert "--detections" in capsys.readouterr().err


def test_infer_ego4d_fhp(tmp_path, infer):
    from vidlit.data.ego4d_fhp import read_hand_annotations
    from vidlit.data.synth.ego4d_fhp import write_ego4d_fhp

    data = write_ego4d_fhp(tmp_path / "data", num_train=8, num_val=4, num_test=2)
    common = _common("ego4d_fhp.yaml", data, tmp_path / "runs")
    ckpt = _fit(common, tmp_path / "runs")
    predicted = _predict(common, ckpt, tmp_path / "hands.json")
    sample = read_hand_annotations(data / "fho_hands_val.json")[1]
    video = data / "clips" / f"{sample.clip_uid}.mp4"
    printed = infer("--ckpt_path", str(ckpt), str(video), "--frame", str(sample.pre45_clip_frame))
    (key,) = printed
    assert key == f"{sample.clip_uid}_{sample.pre45_clip_frame - 1}"
    _close(printed[key], predicted[sample.key])  # the test_views (3) views summed, as predict sums them


def test_infer_ave(tmp_path, infer):
    import h5py

    from vidlit.data.synth.ave import write_ave

    data = write_ave(tmp_path / "data", videos_per_category=(2, 1, 1), num_noisy=2, visual_dim=64)
    common = _common("ave_mpn.yaml", data, tmp_path / "runs", "--data.init_args.feature_dim", "64")
    ckpt = _fit(common, tmp_path / "runs")
    predicted = _loop_predictions(ckpt)

    from vidlit.inference import load

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        test = load(ckpt).datamodule.dataset("test")
    row = int(test.rows[1])
    name = test.video_ids[row]
    with h5py.File(data / "visual_feature.h5") as v, h5py.File(data / "audio_feature.h5") as a:
        np.save(tmp_path / f"{name}.npy", v["avadataset"][row])
        np.save(tmp_path / "audio.npy", a["avadataset"][row])
    printed = infer("--ckpt_path", str(ckpt), str(tmp_path / f"{name}.npy"),
                     "--audio", str(tmp_path / "audio.npy"))  # fmt: skip
    (want,) = predicted[name]
    assert printed[0]["video_id"] == name and printed[0]["labels"] == want["labels"].tolist()
    _close(printed[0]["scores"], want["scores"], 1e-5)


def test_infer_llp(tmp_path, infer):
    from vidlit.data.synth.llp import write_llp

    data = write_llp(tmp_path / "data", num_train=8, num_val=4, num_test=4)
    common = _common("llp.yaml", data, tmp_path / "runs")
    ckpt = _fit(common, tmp_path / "runs")
    predicted = _loop_predictions(ckpt)
    filename = sorted(predicted)[1]
    visual = data / "feats" / "res152" / f"{filename[:11]}.npy"
    (want,) = predicted[filename]
    name = f"{filename[:11]}.npy"
    given = [
        "--audio",
        str(data / "feats" / "vggish" / name),
        "--motion",
        str(data / "feats" / "r2plus1d_18" / name),
    ]
    for extra in ([], given):
        (got,) = infer("--ckpt_path", str(ckpt), str(visual), *extra)
        for key in ("video_prob", "audio_prob", "visual_prob"):
            _close(got[key], want[key], 1e-5)


def test_infer_music_dance(tmp_path, infer):
    from vidlit.data.music_dance import parse_aist_name
    from vidlit.data.synth.music_dance import write_music_dance

    data = write_music_dance(tmp_path / "data", num_genres=2, train_musics=1, eval_musics=1,
                             train_dances=1, eval_dances=1)  # fmt: skip
    common = _common("music_dance.yaml", data, tmp_path / "runs")
    ckpt = _fit(common, tmp_path / "runs")
    predicted = _loop_predictions(ckpt)
    name = sorted(predicted)[0].split("@")[0]
    seq = parse_aist_name(name)
    video = data / "videos" / f"{seq.with_camera('c01') if seq.camera == 'All' else name}.mp4"
    music = data / "all_musics" / f"{seq.music_id}.wav"
    printed = infer("--ckpt_path", str(ckpt), str(video), "--music", str(music))
    want = [p for vid, ps in predicted.items() if vid.startswith(f"{name}@") for p in ps]
    assert len(printed) == len(want) > 0
    for got, w in zip(printed, sorted(want, key=lambda p: int(p["video_id"].split("@")[1]))):
        assert got["music_id"] == w["music_id"] and got["label"] == w["label"]
        for key in ("dance_embedding", "music_embedding", "scores", "sync_scores"):
            _close(got[key], w[key], 1e-4)
        _close([got["alignment"], got["lag_seconds"]], [w["alignment"], w["lag_seconds"]], 1e-5)


def test_infer_loris(tmp_path, infer):
    from vidlit.data.loris import read_lists
    from vidlit.data.synth.loris import write_loris

    data = write_loris(tmp_path / "data", num_train=4, num_test=2, feature_dim=1024)
    common = _common("loris_dance.yaml", data, tmp_path / "runs")
    ckpt = _fit(common, tmp_path / "runs")
    # one clip a batch: each clip's sampling noise is then that of a batch of one, as in infer
    predicted = _predict(common, ckpt, tmp_path / "pred" / "loris.json", "--data.init_args.batch_size", "1")
    _, clip = read_lists(data, "test")[1]
    out = tmp_path / "infer" / "loris.json"
    out.parent.mkdir()
    inputs = ["--pose", str(data / clip.pose), "--music", str(data / clip.audio), "--out", str(out)]
    printed = infer("--ckpt_path", str(ckpt), str(data / clip.visual), *inputs)
    assert json.loads(out.read_text()) == printed
    (got,) = printed["clips"]
    (want,) = [c for c in predicted["clips"] if c["video_id"] == clip.clip_id]
    stem = Path(clip.visual).stem
    assert got["video_id"] == stem and got["wav"] == f"{stem}.wav"
    _close([got["BCS"], got["BHS"]], [want["BCS"], want["BHS"]], 1e-6)
    import soundfile

    generated, _ = soundfile.read(str(out.parent / got["wav"]))
    reference, _ = soundfile.read(str(tmp_path / "pred" / want["wav"]))
    _close(generated, reference, 1e-4)
