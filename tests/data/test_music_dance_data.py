"""AIST++-layout music-dance reader: names, splits, ignore list, rhythm features, the generator."""

import pytest
import torch

from vidlit.data.music_dance import (
    MusicDanceDataModule,
    motion_features,
    parse_aist_name,
    visual_onset_envelope,
)
from vidlit.data.synth.music_dance import write_music_dance
from vidlit.data.video import VideoDecodeError
from vidlit.heads.music_dance import rhythm_alignment

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    # 2 genres x (1 eval music with 1 val + 1 test dance, 1 train music with 2 dances): 8 videos
    return write_music_dance(
        tmp_path_factory.mktemp("md"),
        num_genres=2,
        train_musics=1,
        eval_musics=1,
        train_dances=2,
        eval_dances=1,
        duration=4.0,
    )


def test_parse_aist_name():
    seq = parse_aist_name("gBR_sBM_c01_d04_mBR0_ch01")
    assert (seq.genre, seq.situation, seq.camera, seq.dancer, seq.music_id, seq.choreography) == (
        "BR", "BM", "01", "04", "mBR0", "01",
    )  # fmt: skip
    assert parse_aist_name("gJB_sFM_cAll_d08_mJB5_ch20").with_camera("c03") == "gJB_sFM_c03_d08_mJB5_ch20"
    with pytest.raises(ValueError, match="list.txt:3"):
        parse_aist_name("gBR_sBM_c01_d04_mBR0", where="list.txt:3")
    with pytest.raises(ValueError, match="unknown genre 'XX'"):
        parse_aist_name("gXX_sBM_c01_d04_mXX0_ch01")


def test_motion_features_and_visual_onset_envelope_worked_example():
    frames = torch.zeros(3, 8, 8, 3, dtype=torch.uint8)
    frames[1, :4, :4] = 255  # a white block appears top-left, then stays
    features, strength = motion_features(frames, grid=2)
    assert features.shape == (3, 4)
    # step 1: the top-left cell changed completely, nothing else; step 2: nothing moved
    assert features[1].tolist() == pytest.approx([1.0, 0.0, 0.0, 0.0])
    assert features[2].abs().sum() == pytest.approx(1.0)  # the block vanished at step 2
    assert strength.tolist() == pytest.approx([0.0, 0.25, 0.25])
    # positive flux of the strength at 10 steps/s, resampled to 100 Hz: 0 -> 1 at step 2
    env = visual_onset_envelope(torch.tensor([0.0, 0.0, 1.0, 1.0, 0.0]), fps=10, num_frames=50)
    assert env.shape == (50,)
    assert env[20].item() == 1.0 and env[15].item() == pytest.approx(0.5) and env[10].item() == 0.0
    assert env[30:].abs().sum().item() == 0.0  # slowing down is not an onset


def test_synthetic_layout_splits_and_ignore_list(tiny_root):
    train = (tiny_root / "splits" / "crossmodal_train.txt").read_text().split()
    val = (tiny_root / "splits" / "crossmodal_val.txt").read_text().split()
    ignored = (tiny_root / "ignore_list.txt").read_text().split()
    assert len(train) == 4 and len(val) == 2 and ignored == [train[-1]]
    assert {parse_aist_name(n).music_id for n in val} == {"mBR0", "mPO0"}
    assert all(parse_aist_name(n).camera == "All" for n in train + val)
    assert (tiny_root / "videos" / "gBR_sBM_c01_d01_mBR0_ch01.mp4").is_file()
    assert {p.name for p in (tiny_root / "all_musics").iterdir()} == {
        "mBR0.wav",
        "mBR1.wav",
        "mPO0.wav",
        "mPO1.wav",
    }
    # the ignored sequence's video is unreadable: strict loading only works because it is skipped
    dm = MusicDanceDataModule(root=str(tiny_root), synthetic=False, strict=True)
    assert [s.name for s in dm.sequences("train")] == train[:-1]
    assert len(dm.dataset("train")) == 3 * 2  # 3 sequences x two 2-s windows


def test_windows_features_and_rhythm_sync(tiny_root):
    dm = MusicDanceDataModule(root=str(tiny_root), synthetic=False, clip_seconds=2, batch_size=4)
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    assert batch["motion"].shape == (4, 50, 64)
    assert batch["visual_envelope"].shape == batch["audio_envelope"].shape == (4, 200)
    assert batch["audio"].shape == (4, 2, 96, 64)
    assert batch["video_ids"][:2] == ["gBR_sBM_cAll_d01_mBR0_ch01@0", "gBR_sBM_cAll_d01_mBR0_ch01@2"]
    assert batch["music_ids"] == ["mBR0@0", "mBR0@2", "mPO0@0", "mPO0@2"]
    assert batch["genre"].tolist() == [0, 0, 1, 1]
    assert batch["targets"][2] == {"video_id": batch["video_ids"][2], "music_id": "mPO0@0", "label": 1}
    # the dance's visual onsets follow its own music's onsets (within 100 ms), not another window's
    own, lag = rhythm_alignment(batch["visual_envelope"], batch["audio_envelope"], max_lag=10)
    other, _ = rhythm_alignment(batch["visual_envelope"], batch["audio_envelope"].roll(1, dims=0), max_lag=10)
    # (sharp audio clicks against 25-fps visual humps: about 0.45 for the true pair, 0.05-0.3 otherwise)
    assert (own > 0.35).all() and (own > other).all() and own.mean() > other.mean() + 0.15, (own, other)
    assert (lag.abs() <= 10).all()


def test_unreadable_video_is_skipped_or_raises(tiny_root, tmp_path):
    (tmp_path / "ignore_list.txt").write_text("")
    for sub in ("videos", "all_musics", "splits"):
        (tmp_path / sub).symlink_to(tiny_root / sub)
    dm = MusicDanceDataModule(root=str(tmp_path), synthetic=False)
    assert len(dm.dataset("train")) == 3 * 2
    assert dm.skipped == [(tiny_root / "ignore_list.txt").read_text().strip()]
    with pytest.raises(VideoDecodeError, match="mp4"):
        MusicDanceDataModule(root=str(tmp_path), synthetic=False, strict=True).dataset("train")


def test_bad_files_name_the_file_and_line(tmp_path):
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "crossmodal_val.txt").write_text(
        "gBR_sBM_cAll_d01_mBR0_ch01\ngBR_sBM_cAll_d01_mPO0_ch01\n"
    )
    dm = MusicDanceDataModule(root=str(tmp_path), synthetic=False)
    with pytest.raises(ValueError, match=r"crossmodal_val.txt:2: .* dances genre BR to music mPO0"):
        dm.sequences("val")
    with pytest.raises(FileNotFoundError, match="crossmodal_test.txt"):
        dm.sequences("test")
    with pytest.raises(ValueError, match="feature_dim must be a square"):
        MusicDanceDataModule(feature_dim=60)
    with pytest.raises(ValueError, match="clip_seconds"):
        MusicDanceDataModule(clip_seconds=1.5)


def test_each_music_track_is_analysed_once(tiny_root, monkeypatch):
    # rhythm (onset envelope) and timbre (log-mel patches) share one spectrogram per track
    import vidlit.layers.log_mel as audio

    calls = []
    real = audio.log_mel_spectrogram

    def counting(waveform, sample_rate=16000):
        calls.append(waveform.shape)
        return real(waveform, sample_rate)

    monkeypatch.setattr(audio, "log_mel_spectrogram", counting)
    dm = MusicDanceDataModule(root=str(tiny_root), synthetic=False)
    dm.dataset("val")
    assert len(calls) == len(dm._music_cache) == 2  # mBR0 and mPO0


def test_missing_files_are_reported_before_decoding(tiny_root, tmp_path, caplog):
    (tmp_path / "splits").mkdir()
    for sub in ("videos", "all_musics"):
        (tmp_path / sub).symlink_to(tiny_root / sub)
    val = (tiny_root / "splits" / "crossmodal_val.txt").read_text().split()
    ghost = "gBR_sBM_cAll_d29_mBR0_ch09"  # listed, but no video was ever written
    (tmp_path / "splits" / "crossmodal_val.txt").write_text("\n".join([*val, ghost]) + "\n")
    with pytest.raises(
        FileNotFoundError, match=r"1 video or music file\(s\) of the val split .*d29_mBR0_ch09.mp4"
    ):
        MusicDanceDataModule(root=str(tmp_path), synthetic=False, strict=True).dataset("val")
    dm = MusicDanceDataModule(root=str(tmp_path), synthetic=False)
    assert len(dm.dataset("val")) == 2 * 2 and dm.skipped == [ghost]
    assert "skipping their sequences" in caplog.text
