"""vidlit's own save format: save_pretrained / from_pretrained (config.json + model.safetensors)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from vidlit.backbones import VideoTextModel, VideoViT, create_backbone, list_backbones
from vidlit.backbones._pretrained import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    PretrainedMixin,
    architecture_of,
    is_vidlit_folder,
    load_any_vidlit_folder,
    resolve_pretrained_dir,
)

# Every VideoViT size accepts these: one block of width 32 on 4 x 32 px clips.
TINY_VIT = dict(embed_dim=32, depth=1, num_heads=2, num_frames=4, img_size=32, patch_size=8)
# and every CLIPVideoViT (viclip_*) size these
TINY_CLIP = dict(embed_dim=32, depth=1, num_heads=2, num_frames=4, img_size=32, patch_size=8)


def tiny_overrides(name: str) -> dict:
    """Small overrides for a registered size, or none for a test size (other families: add theirs)."""
    if name.startswith("vit_"):
        return TINY_VIT
    if name.startswith("viclip_"):
        return TINY_CLIP
    if name.endswith("_test"):
        return {}
    pytest.fail(f"{name}: no tiny overrides known; add them to tiny_overrides")


def clip_for(model: torch.nn.Module, seed: int = 0) -> torch.Tensor:
    """A fixed clip of the model's configured size."""
    h, w = model.img_size
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(2, 3, model.num_frames, h, w, generator=generator)


def outputs(model: torch.nn.Module, clip: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(clip, output="tokens")


@pytest.mark.parametrize("name", list_backbones())
def test_backbone_round_trip_identical_outputs(name: str, tmp_path: Path) -> None:
    overrides = tiny_overrides(name)
    model = create_backbone(name, **overrides)
    assert isinstance(model, PretrainedMixin), f"{name}: a registered backbone must save (PretrainedMixin)"
    with torch.no_grad():  # non-trivial values everywhere, not only the initialization's zeros and ones
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.01)
    folder = model.save_pretrained(tmp_path / name)
    assert sorted(p.name for p in folder.iterdir()) == [CONFIG_NAME, WEIGHTS_NAME]
    assert is_vidlit_folder(folder)
    clip = clip_for(model)
    expected = outputs(model, clip)

    reloaded = type(model).from_pretrained(folder)
    assert type(reloaded) is type(model)
    assert reloaded.pretrained_config() == model.pretrained_config()
    assert torch.equal(outputs(reloaded, clip), expected)
    assert torch.equal(outputs(load_any_vidlit_folder(folder), clip), expected)
    # create_backbone builds the named size and loads the folder into it
    assert torch.equal(outputs(create_backbone(name, checkpoint_path=folder, **overrides), clip), expected)
    # the weights file is plain safetensors with every state-dict key
    assert set(load_file(str(folder / WEIGHTS_NAME))) == set(model.state_dict())


@pytest.mark.parametrize("name", list_backbones())
def test_real_size_config_round_trip_on_meta(name: str) -> None:
    with torch.device("meta"):
        model = create_backbone(name)
        document = json.loads(json.dumps(model.pretrained_document()))
        arch, config = architecture_of(document, "config.json", top_level=True)
        rebuilt = arch.from_pretrained_config(config)
    assert arch is type(model)
    assert rebuilt.pretrained_config() == model.pretrained_config()
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes


def test_from_pretrained_overrides_training_args(tmp_path: Path) -> None:
    model = create_backbone("vit_test")
    model.save_pretrained(tmp_path)
    reloaded = VideoViT.from_pretrained(tmp_path, drop_path_rate=0.2)
    assert reloaded.pretrained_config()["drop_path_rate"] == 0.2
    clip = clip_for(model)
    assert torch.equal(outputs(reloaded, clip), outputs(model, clip))  # eval: no stochastic depth
    # training-only arguments may differ when loading into a built model
    built = create_backbone("vit_test", checkpoint_path=tmp_path, drop_path_rate=0.1)
    assert torch.equal(outputs(built, clip), outputs(model, clip))


@pytest.mark.parametrize(
    ("video", "text"), [("vit_test", "text_test"), ("vit_test", "clip_test"), ("viclip_test", "clip_test")]
)
def test_video_text_model_round_trip(video: str, text: str, tmp_path: Path) -> None:
    model = VideoTextModel(create_backbone(video), text=text, proj_dim=16, drop_ratio=0.5)
    with torch.no_grad():
        model.logit_scale.fill_(3.0)
        for param in model.text.parameters():  # not the seeded initialization that a rebuild repeats
            param.add_(torch.randn_like(param) * 0.01)
    folder = model.save_pretrained(tmp_path)
    config = json.loads((folder / CONFIG_NAME).read_text())
    assert config["architecture"] == "VideoTextModel"
    assert config["config"]["video"]["architecture"] == type(model.video).__name__
    assert config["config"]["text"]["name"] == text
    assert type(VideoTextModel.from_pretrained(folder).text) is type(model.text)

    reloaded = VideoTextModel.from_pretrained(folder)
    assert reloaded.pretrained_config() == model.pretrained_config()
    model.eval()
    reloaded.eval()
    clip = clip_for(model.video)
    captions = ["a red square moving left", "a blue circle moving up"]
    with torch.no_grad():
        assert torch.equal(reloaded.encode_video(clip), model.encode_video(clip))
        assert torch.equal(reloaded.encode_text(captions), model.encode_text(captions))
        assert torch.equal(reloaded.scale(), model.scale())
    assert isinstance(load_any_vidlit_folder(folder), VideoTextModel)


def _edit_weights(folder: Path, drop: str, add: str) -> None:
    weights = load_file(str(folder / WEIGHTS_NAME))
    weights[add] = weights.pop(drop)
    save_file(weights, str(folder / WEIGHTS_NAME))


def test_missing_and_extra_keys_are_named_in_one_line(tmp_path: Path) -> None:
    create_backbone("vit_test").save_pretrained(tmp_path)
    _edit_weights(tmp_path, drop="blocks.1.mlp.fc2.bias", add="blocks.9.extra")
    with pytest.raises(ValueError) as err:
        VideoViT.from_pretrained(tmp_path)
    message = str(err.value)
    assert "\n" not in message
    assert "missing keys ['blocks.1.mlp.fc2.bias']" in message
    assert "unexpected keys ['blocks.9.extra']" in message
    with pytest.raises(ValueError, match=r"missing keys \['blocks.1.mlp.fc2.bias'\]") as err:
        create_backbone("vit_test", checkpoint_path=tmp_path)
    assert "\n" not in str(err.value)
    with pytest.warns(UserWarning, match="blocks.9.extra"):
        VideoViT.from_pretrained(tmp_path, strict=False)


def test_video_text_missing_key_is_named(tmp_path: Path) -> None:
    VideoTextModel(create_backbone("vit_test"), text="text_test", proj_dim=8).save_pretrained(tmp_path)
    _edit_weights(tmp_path, drop="text_proj.weight", add="text_projection")
    with pytest.raises(ValueError) as err:
        VideoTextModel.from_pretrained(tmp_path)
    assert "\n" not in str(err.value)
    assert "missing keys ['text_proj.weight'], unexpected keys ['text_projection']" in str(err.value)


def _edit_config(folder: Path, edit) -> None:
    document = json.loads((folder / CONFIG_NAME).read_text())
    edit(document)
    (folder / CONFIG_NAME).write_text(json.dumps(document))


def test_unknown_architecture_is_one_line(tmp_path: Path) -> None:
    create_backbone("vit_test").save_pretrained(tmp_path)
    _edit_config(tmp_path, lambda d: d.update(architecture="NoSuchNet"))
    for load in (VideoViT.from_pretrained, load_any_vidlit_folder):
        with pytest.raises(ValueError, match="key 'architecture': unknown 'NoSuchNet'") as err:
            load(tmp_path)
        assert "\n" not in str(err.value)
        assert str(tmp_path / CONFIG_NAME) in str(err.value)


def test_unknown_nested_video_architecture_is_one_line(tmp_path: Path) -> None:
    VideoTextModel(create_backbone("vit_test"), text="text_test", proj_dim=8).save_pretrained(tmp_path)
    _edit_config(tmp_path, lambda d: d["config"]["video"].update(architecture="NoSuchTower"))
    with pytest.raises(ValueError, match="'video': key 'architecture': unknown 'NoSuchTower'") as err:
        VideoTextModel.from_pretrained(tmp_path)
    assert "\n" not in str(err.value)


def test_wrong_architecture_for_class(tmp_path: Path) -> None:
    VideoTextModel(create_backbone("vit_test"), text="text_test", proj_dim=8).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="'VideoTextModel' is not a VideoViT"):
        VideoViT.from_pretrained(tmp_path)


def test_create_backbone_rejects_a_folder_of_another_config(tmp_path: Path) -> None:
    create_backbone("vit_test", num_heads=2).save_pretrained(tmp_path)
    # same shapes, other head count: would load silently and compute something else
    with pytest.raises(ValueError, match=r"config differs from the model's: num_heads: file 2 vs model 4"):
        create_backbone("vit_test", checkpoint_path=tmp_path)


def test_missing_weights_file(tmp_path: Path) -> None:
    create_backbone("vit_test").save_pretrained(tmp_path)
    (tmp_path / WEIGHTS_NAME).unlink()
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        VideoViT.from_pretrained(tmp_path)


def test_missing_file_path_is_not_tried_on_the_hub(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        resolve_pretrained_dir("runs/model.ckpt")
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        VideoViT.from_pretrained(tmp_path / "nothing" / "here")


def test_transformers_folder_still_dispatches_to_videomae(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.VideoMAEConfig(
        image_size=32,
        patch_size=8,
        num_frames=4,
        tubelet_size=2,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
    )
    transformers.VideoMAEModel(config).save_pretrained(tmp_path)
    assert not is_vidlit_folder(tmp_path)
    with pytest.warns(
        UserWarning, match="final norm layout differs"
    ) as caught:  # VideoMAEModel has no fc_norm
        model = VideoViT.from_pretrained(tmp_path)
    assert {w.filename for w in caught} == {__file__}  # the user's call, not a line inside vidlit
    assert model.embed_dim == 32 and len(model.blocks) == 1
    # and the loaded model saves in vidlit's format, with the same outputs after a round trip
    model.save_pretrained(tmp_path / "vidlit")
    clip = clip_for(model)
    assert torch.equal(outputs(VideoViT.from_pretrained(tmp_path / "vidlit"), clip), outputs(model, clip))


def test_video_text_model_loads_into_a_built_one(tmp_path: Path) -> None:
    model = VideoTextModel(create_backbone("vit_test"), text="text_test", proj_dim=8).eval()
    model.save_pretrained(tmp_path)
    # training choices may differ: stochastic depth in the video tower, a frozen text tower
    other = VideoTextModel(
        create_backbone("vit_test", drop_path_rate=0.1), text="text_test", proj_dim=8, freeze_text=True
    ).eval()
    other.load_pretrained(tmp_path)
    clip = clip_for(model.video)
    with torch.no_grad():
        assert torch.equal(other.encode_video(clip), model.encode_video(clip))
    with pytest.raises(ValueError, match="proj_dim: file 8 vs model 4"):
        VideoTextModel(create_backbone("vit_test"), text="text_test", proj_dim=4).load_pretrained(tmp_path)
    with pytest.raises(ValueError, match="not a folder that save_pretrained wrote"):
        other.load_pretrained(tmp_path / WEIGHTS_NAME)


@pytest.fixture
def offline_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache with downloads turned off (HF_HUB_OFFLINE)."""
    constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


def test_repo_id_loads_from_the_hub_cache(offline_hub_cache: Path) -> None:
    # what an earlier download of "me/tiny-vit" left in the cache: refs/main -> snapshots/<commit>/
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = offline_hub_cache / "models--me--tiny-vit"
    model = create_backbone("vit_test").eval()
    model.save_pretrained(repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    clip = clip_for(model)
    assert torch.equal(outputs(VideoViT.from_pretrained("me/tiny-vit"), clip), outputs(model, clip))
    assert torch.equal(
        outputs(create_backbone("vit_test", checkpoint_path="me/tiny-vit"), clip), outputs(model, clip)
    )


def test_repo_id_not_downloadable_is_one_line(offline_hub_cache: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such local folder, and not downloadable") as err:
        VideoTextModel.from_pretrained("nobody/no-such-model")
    assert "\n" not in str(err.value)


class TiedPair(torch.nn.Module, PretrainedMixin):
    """Two linears sharing one weight, and a buffer that is a view of it: memory safetensors refuses."""

    def __init__(self, width: int = 4):
        super().__init__()
        self.width = width
        self.a = torch.nn.Linear(width, width, bias=False)
        self.b = torch.nn.Linear(width, width, bias=False)
        self.b.weight = self.a.weight
        self.register_buffer("row", self.a.weight.data[1])

    def pretrained_config(self) -> dict:
        return {"width": self.width}


def test_shared_memory_saves_every_key(tmp_path: Path) -> None:
    model = TiedPair()
    model.save_pretrained(tmp_path)
    assert set(load_file(str(tmp_path / WEIGHTS_NAME))) == {"a.weight", "b.weight", "row"}
    reloaded = TiedPair.from_pretrained(tmp_path)
    assert torch.equal(reloaded.b.weight, model.a.weight)
    assert torch.equal(reloaded.row, model.a.weight[1])


@pytest.mark.parametrize(
    "variant",
    [
        dict(pos_embed_type="learned"),
        dict(use_mean_pooling=True, init_values=0.1, norm_eps=1e-12, fc_norm_eps=1e-5),
        dict(img_size=(32, 48), qkv_bias=False, mlp_ratio=2.0),
    ],
)
def test_vit_variants_round_trip(variant: dict, tmp_path: Path) -> None:
    model = create_backbone("vit_test", **variant).eval()
    model.save_pretrained(tmp_path)
    reloaded = VideoViT.from_pretrained(tmp_path)
    clip = clip_for(model)
    for output in ("tokens", "pooled", "temporal"):
        with torch.no_grad():
            assert torch.equal(reloaded.eval()(clip, output=output), model(clip, output=output))
    assert torch.equal(reloaded.pos_embed, model.pos_embed)


def test_model_card_names_the_library_and_class() -> None:
    card = create_backbone("vit_test").model_card()
    assert card.startswith("---\nlibrary_name: vidlit\n")
    assert "VideoViT.from_pretrained(" in card
