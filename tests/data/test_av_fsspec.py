"""LLP, AVE and XD-Violence read from fsspec URLs (``memory://``) give what a local copy gives."""

import fsspec
import pytest
import torch

from vidlit.core.storage import OutputFolder
from vidlit.data.ave import AVEDataModule
from vidlit.data.llp import LLPVideoParsing
from vidlit.data.synth.ave import write_ave
from vidlit.data.synth.llp import write_llp
from vidlit.data.synth.xd_violence import write_xd_violence
from vidlit.data.xd_violence import XDViolence


def _upload(local, url):
    """Every file under ``local`` to the same names under ``url``, written as ``vidlit extract`` writes."""
    out = OutputFolder(url)
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        out.write(path.relative_to(local).as_posix(), path.read_bytes())


def _assert_equal(a, b, where="batch"):
    """Two batches (nested dicts / lists of tensors and plain values) are equal, tensors ``torch.equal``."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_equal(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def _first_batches(local, remote):
    """The first train and val batch of two data modules are equal."""
    for dm in (local, remote):
        dm.setup("fit")
    for loader in ("train_dataloader", "val_dataloader"):
        a, b = next(iter(getattr(local, loader)())), next(iter(getattr(remote, loader)()))
        _assert_equal(a, b, loader)


# ---- LLP

LLP_DIMS = {"audio_dim": 8, "feature_dim": 12, "motion_dim": 4}


@pytest.fixture(scope="module")
def llp_local(tmp_path_factory):
    root = tmp_path_factory.mktemp("llp_fsspec") / "llp"
    write_llp(root, num_train=6, num_val=4, num_test=2, audio_dim=8, visual_dim=8, motion_dim=4)
    return root


def test_llp_batches_from_memory_root_equal_local(llp_local, memory_url):
    _upload(llp_local, memory_url)
    local = LLPVideoParsing(root=str(llp_local), batch_size=3, **LLP_DIMS)
    remote = LLPVideoParsing(root=memory_url, batch_size=3, synthetic=True, **LLP_DIMS)
    _first_batches(local, remote)
    assert all(str(p).startswith("memory://") for p in remote.dataset("val")._found.values())


def test_llp_lists_each_url_feature_folder_once(llp_local, memory_url, memory_requests):
    """Finding the feature files of every video of both splits lists each feature folder once."""
    _upload(llp_local, memory_url)
    memory_requests["ls"].clear(), memory_requests["stat"].clear()
    dm = LLPVideoParsing(root=memory_url, batch_size=3, **LLP_DIMS)
    dm.setup("fit")
    root = fsspec.core.url_to_fs(memory_url)[1]
    folders = [f"{root}/feats/{name}" for name in ("vggish", "res152", "r2plus1d_18")]
    assert sorted(memory_requests["ls"]) == sorted(folders)
    assert not [p for p in memory_requests["stat"] if p.startswith(f"{root}/feats/")]


def test_llp_traversal_id_refused_for_url_root(llp_local, memory_url):
    _upload(llp_local, memory_url)
    out = OutputFolder(memory_url)
    lines = out.read_bytes("AVVP_train.csv").decode().splitlines()
    lines[1] = "../../x/secret_0_10\t" + lines[1].split("\t", 1)[1]
    out.write("AVVP_train.csv", "\n".join(lines).encode())
    dm = LLPVideoParsing(root=memory_url, batch_size=3, **LLP_DIMS)
    with pytest.raises(
        ValueError, match=r"video '../../x/secret_0_10': '../../x/sec.npy' points outside memory://"
    ):
        dm.setup("fit")


def test_url_root_with_synthetic_needs_the_data_there(memory_url):
    with pytest.raises(FileNotFoundError, match=r"^memory://.*: no AVVP_train.csv: synthetic sample data is "
                       r"written to local folders only: run `vidlit data synth llp --out DIR`"):  # fmt: skip
        LLPVideoParsing(root=memory_url, synthetic=True, **LLP_DIMS)


# ---- XD-Violence

XD_DIMS = {"feature_dim": 16, "audio_dim": 8, "num_crops": 2}


@pytest.fixture(scope="module")
def xd_local(tmp_path_factory):
    root = tmp_path_factory.mktemp("xd_fsspec") / "xd"
    write_xd_violence(root, num_train=4, num_test=4, min_snippets=8, max_snippets=12, **XD_DIMS)
    return root


@pytest.mark.parametrize("ground_truth", ["annotations.txt", "list/gt.npy"])
def test_xd_violence_batches_from_memory_root_equal_local(xd_local, memory_url, ground_truth):
    _upload(xd_local, memory_url)
    kwargs = {"batch_size": 4, "eval_batch_size": 2, "ground_truth": ground_truth, **XD_DIMS}
    local = XDViolence(root=str(xd_local), **kwargs)
    remote = XDViolence(root=memory_url, synthetic=True, **kwargs)
    _first_batches(local, remote)
    assert all(str(p).startswith("memory://") for v in remote.videos("train") for p in (*v.rgb, v.audio))


def test_xd_violence_lists_each_url_feature_folder_once(xd_local, memory_url, memory_requests):
    _upload(xd_local, memory_url)
    memory_requests["ls"].clear(), memory_requests["stat"].clear()
    XDViolence(root=memory_url, **XD_DIMS).setup("fit")
    root = fsspec.core.url_to_fs(memory_url)[1]
    folders = ["i3d-features/RGB", "i3d-features/RGBTest", "vggish-features/train", "vggish-features/test"]
    assert sorted(memory_requests["ls"]) == sorted(f"{root}/{folder}" for folder in folders)
    assert not [p for p in memory_requests["stat"] if "-features/" in p]


def test_xd_violence_traversal_entry_refused_for_url_root(xd_local, memory_url):
    _upload(xd_local, memory_url)
    out = OutputFolder(memory_url)
    lines = out.read_bytes("list/rgb.list").decode().splitlines()
    lines[2] = "features/../../../elsewhere/x_label_A__0.npy"
    out.write("list/rgb.list", "\n".join(lines).encode())
    dm = XDViolence(root=memory_url, **XD_DIMS)
    bad = r"list/rgb.list: line 3: 'features/../../../elsewhere/x_label_A__0.npy' points outside memory://"
    with pytest.raises(ValueError, match=bad):
        dm.setup("fit")


# ---- AVE (h5 features, rows named by position: no id in a file becomes a path)


@pytest.fixture(scope="module")
def ave_local(tmp_path_factory):
    root = tmp_path_factory.mktemp("ave_fsspec") / "ave"
    write_ave(
        root, num_categories=2, videos_per_category=(3, 2, 1), num_noisy=2, audio_dim=8, visual_dim=4, grid=3
    )
    return root


@pytest.mark.parametrize("supervision", ["full", "weak"])
def test_ave_batches_from_memory_root_equal_local(ave_local, memory_url, supervision):
    _upload(ave_local, memory_url)
    kwargs = {"feature_dim": 4, "audio_dim": 8, "supervision": supervision, "batch_size": 4}
    local = AVEDataModule(root=str(ave_local), **kwargs)
    remote = AVEDataModule(root=memory_url, **kwargs)  # synthetic: true (the default) reads what is there
    _first_batches(local, remote)
    assert remote.dataset("val").audio_path == f"{memory_url}/audio_feature.h5"


def test_ave_url_root_without_data_is_one_line(memory_url):
    message = r"^memory://.*: no audio_feature.h5: synthetic sample data is written to local folders only"
    with pytest.raises(FileNotFoundError, match=message):
        AVEDataModule(root=memory_url).setup("fit")


def test_ave_opens_its_h5_files_without_asking_first(ave_local, memory_url, memory_requests):
    """The optional files are found in one listing of the root; an h5 file is opened, not asked for."""
    _upload(ave_local, memory_url)
    memory_requests["ls"].clear(), memory_requests["stat"].clear()
    dm = AVEDataModule(root=memory_url, synthetic=False, feature_dim=4, audio_dim=8, supervision="weak")
    dm.setup("fit")
    assert memory_requests == {"ls": [fsspec.core.url_to_fs(memory_url)[1]], "stat": []}


def test_ave_missing_h5_at_a_url_is_one_line(memory_url):
    with pytest.raises(FileNotFoundError, match=rf"^{memory_url}/audio_feature.h5: not found$"):
        AVEDataModule(root=memory_url, synthetic=False).setup("fit")
