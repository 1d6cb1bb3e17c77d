"""The LORIS reader on its synthetic sample data: layout, preprocessing, rhythm, bad files, submission."""

import json
import os
import shutil

import numpy as np
import pytest
import soundfile
import torch

from vidlit.data.loris import LorisDataModule, read_lists, read_wav
from vidlit.data.synth.loris import write_loris
from vidlit.formats import AnnotationError
from vidlit.formats.loris import PEAK, POSE_RATE, list_name
from vidlit.metrics.beat_alignment import detect_onsets

RATE, SEGMENT = 4000, 2**14


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_loris(
        tmp_path_factory.mktemp("loris") / "data", num_train=6, num_test=4, sample_rate=RATE, feature_dim=32
    )


def module(root, **kwargs):
    options = dict(sample_rate=RATE, segment_samples=SEGMENT, feature_dim=32, batch_size=4)
    return LorisDataModule(str(root), **{**options, **kwargs})


def copy(root, tmp_path):
    return shutil.copytree(root, tmp_path / "copy")


def test_layout_batch_and_preprocessing(root):
    for split in ("train", "test"):
        assert all((root / list_name(split, kind)).is_file() for kind in ("audio", "visual", "pose"))
    dm = module(root)
    dm.setup("fit")
    assert dm.num_classes == 10 and not dm.skipped
    batch = next(iter(dm.val_dataloader()))
    assert batch["audio"].shape == (4, 1, SEGMENT) and batch["sample_rate"] == RATE
    assert batch["beats"].shape == (4, 66) and batch["visual"].shape == (4, 9, 32)
    assert batch["genre"].tolist() == [0, 1, 2, 3]  # gBR, gPO, gLO, gMH
    # eval: the clip peak-normalized (its peak may fall after the segment), no gain; the reference is the same
    peaks = batch["audio"].abs().amax(dim=(1, 2))
    assert (peaks <= PEAK + 1e-3).all() and peaks.max() == pytest.approx(PEAK, abs=1e-3)
    torch.testing.assert_close(batch["targets"][0]["audio"], batch["audio"][0, 0])
    train = next(iter(dm.train_dataloader()))
    peaks = train["audio"].abs().amax(dim=(1, 2))
    assert ((peaks >= 0.3 * PEAK - 1e-3) & (peaks <= PEAK + 1e-3)).all() and peaks.std() > 0


def test_visual_beats_are_the_music_hits(root):
    dm = module(root)
    for item in dm.items("val"):
        beats = torch.nonzero(item.beats).flatten().numpy() / POSE_RATE
        wave, rate = soundfile.read(item.audio)
        onsets, _ = detect_onsets(wave, rate)
        assert len(beats) == len(onsets) > 0
        assert np.abs(beats - onsets).max() < 0.06  # one 16-Hz frame


def test_train_crop_keeps_streams_aligned(root):
    dm = module(root)
    dm.setup("fit")
    dataset = dm.datasets["train"]
    for epoch in range(4):
        dataset.set_epoch(epoch)
        item = dataset[0]
        beat_times = torch.nonzero(item["beats"]).flatten().numpy() / POSE_RATE
        onsets, _ = detect_onsets(item["audio"][0], RATE)
        for t in beat_times[beat_times < SEGMENT / RATE - 0.2]:
            assert np.abs(onsets - t).min() < 0.06


def test_missing_and_bad_files_are_skipped_and_counted_or_raise(root, tmp_path):
    data = copy(root, tmp_path)
    audio = [line for line in (data / "test_audio.txt").read_text().splitlines()]
    pose = [line for line in (data / "test_pose.txt").read_text().splitlines()]
    visual = [line for line in (data / "test_visual.txt").read_text().splitlines()]
    (data / audio[0]).unlink()  # missing wav
    (data / pose[1]).write_bytes(b"not a numpy file")  # corrupt pose
    np.save(data / visual[2], np.zeros((9, 7), dtype=np.float32))  # wrong feature width
    dm = module(data)
    assert len(dm.items("val")) == 1 and len(dm.skipped) == 3
    assert any(audio[0] in s and "not found" in s for s in dm.skipped)
    with pytest.raises(FileNotFoundError, match=audio[0].replace(".", r"\.")):
        module(data, strict=True).items("val")
    (data / audio[0]).write_bytes(b"RIFF garbage")
    with pytest.raises(ValueError, match="not a readable audio file"):
        module(data, strict=True).items("val")


def test_malformed_lists_name_file_and_line(root, tmp_path):
    data = copy(root, tmp_path)
    lines = (data / "test_audio.txt").read_text().splitlines()
    (data / "test_audio.txt").write_text("\n".join([lines[0], "audio/x.mp3", *lines[2:]]) + "\n")
    with pytest.raises(AnnotationError, match=r"test_audio.txt: line 2: key 'audio': expected a \.wav file"):
        read_lists(data, "test")
    (data / "test_audio.txt").write_text("\n".join(lines[:2]) + "\n")
    with pytest.raises(ValueError, match="not parallel"):
        read_lists(data, "test")
    (data / "test_audio.txt").write_text("\n".join(["../../escape.wav", *lines[1:]]) + "\n")
    with pytest.raises(ValueError, match="points outside"):
        module(data, strict=True).items("val")


def test_write_submission_writes_wavs_and_metrics(root, tmp_path):
    dm = module(root)
    dm.setup("predict")
    # a perfect generation: each clip's own reference audio, whole (the protocol detects onsets on
    # the whole reference and cuts its one-second bins to the generated length)
    items = dm.items("predict")
    references = [read_wav(item.audio, RATE) for item in items]
    preds = [
        {"video_id": item.clip_id, "waveform": audio, "sample_rate": RATE}
        for item, audio in zip(items, references)
    ]
    path = dm.write_submission(preds, tmp_path / "out" / "loris.json")
    document = json.loads(path.read_text())
    assert document["metrics"]["BHS"] == pytest.approx(1.0) and document["metrics"]["F1"] == pytest.approx(
        1.0
    )
    wav, rate = soundfile.read(tmp_path / "out" / document["clips"][0]["wav"])
    assert rate == RATE and len(wav) == len(references[0])


def test_subsets_without_genre_train_a_head_without_genre(root):
    from vidlit.heads.loris import LorisHead

    dm = module(root, subset="floor_exercise")
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert dm.num_classes == 0 and (batch["genre"] == -1).all()
    head = LorisHead(in_dim=32, num_classes=dm.num_classes, channels=(8, 16, 16), cond_dim=16, progress=False)
    assert head.condition_names == ("rhythm", "visual")
    loss = head.loss(head(batch["audio"], batch), batch)["loss"]
    assert torch.isfinite(loss)
    with pytest.raises(ValueError, match="subset must be one of"):
        module(root, subset="ballet")


def test_resampled_audio_is_read_once_and_identical_every_epoch(root, tmp_path, monkeypatch):
    """Files at 4 kHz, data at 2 kHz: epoch 1 resamples nothing and yields epoch 0's audio."""
    import librosa

    from vidlit.data.loris import RESAMPLED, ResampleCache

    calls = []
    resample = librosa.resample

    def counting(*args, **kwargs):  # observation only: the real resampler runs
        calls.append(kwargs["orig_sr"])
        return resample(*args, **kwargs)

    monkeypatch.setattr(librosa, "resample", counting)
    RESAMPLED.clear()
    dm = module(root, sample_rate=RATE // 2, segment_samples=SEGMENT // 2)
    dm.setup("fit")
    data = dm.dataset("train")
    epochs = []
    for epoch in (0, 1):
        data.set_epoch(epoch)
        epochs.append([data[i]["reference"] for i in range(len(data))])
    assert calls == [RATE] * len(data)  # once per clip, in epoch 0
    for first, second in zip(*epochs):
        assert torch.equal(first, second)
    item = dm.items("train")[0]
    uncached = read_wav(item.audio, RATE // 2, cache=None)
    assert torch.equal(epochs[1][0], uncached[: SEGMENT // 2])
    # a file changed on disk is read again; the cache holds at most max_bytes
    changed = shutil.copy(item.audio, tmp_path / "changed.wav")
    read_wav(changed, RATE // 2)
    wave, rate = soundfile.read(changed)
    soundfile.write(changed, wave[::-1], rate)
    os.utime(changed, ns=(1, 1))  # a new mtime, whatever the file system's clock resolution
    assert not torch.equal(read_wav(changed, RATE // 2), uncached)
    clips = [read_wav(clip.audio, RATE // 2, cache=None) for clip in dm.items("train")[:3]]
    small = ResampleCache(max_bytes=min(clip.numel() for clip in clips) * 4)  # room for one
    for clip in dm.items("train")[:3]:
        read_wav(clip.audio, RATE // 2, cache=small)
    assert len(small) <= 1
    assert torch.equal(read_wav(clip.audio, RATE // 2, cache=small), clips[2])
