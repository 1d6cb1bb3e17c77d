"""Zero-shot tasks: prompt ensembling by hand, metric wiring through `trainer.test`, model loading."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from vidlit.backbones import create_backbone
from vidlit.backbones.video_text import VideoTextModel
from vidlit.metrics.retrieval import retrieval_metrics
from vidlit.tasks.prompts import DEFAULT_PROMPTS, KINETICS_PROMPTS, check_prompt_templates, class_embeddings
from vidlit.tasks.video_text import VideoTextPretrain
from vidlit.tasks.zero_shot import ZeroShotClassification, ZeroShotRetrieval, load_video_text_model

CLASSES = ["red square", "blue circle", "green triangle"]


@pytest.fixture(scope="module")
def model() -> VideoTextModel:
    torch.manual_seed(0)
    return VideoTextModel(create_backbone("vit_test"), text="text_test", proj_dim=16).eval()


class Clips(L.LightningDataModule):
    """Five random clips with labels and captions, two per batch (the last batch holds one)."""

    class_names = CLASSES

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.items = [
            {"video": torch.randn(3, 8, 32, 32, generator=g), "video_id": f"v{i}", "label": i % 3,
             "caption": f"a {CLASSES[i % 3]} moving {('left', 'right', 'up', 'down', 'left')[i]}"}
            for i in range(5)
        ]  # fmt: skip

    @staticmethod
    def collate(samples):
        return {
            "video": torch.stack([s["video"] for s in samples]),
            "video_ids": [s["video_id"] for s in samples],
            "captions": [s["caption"] for s in samples],
            "targets": [{"video_id": s["video_id"], "label": s["label"]} for s in samples],
        }

    def test_dataloader(self):
        return DataLoader(self.items, batch_size=2, collate_fn=self.collate)


def _trainer(tmp_path) -> L.Trainer:
    return L.Trainer(default_root_dir=tmp_path, accelerator="cpu", logger=False, enable_progress_bar=False,
                     enable_model_summary=False, enable_checkpointing=False)  # fmt: skip


def test_kinetics_prompts_are_clips_28_templates():
    assert len(KINETICS_PROMPTS) == 28 and len(set(KINETICS_PROMPTS)) == 28
    assert KINETICS_PROMPTS[0] == "a photo of {}." and KINETICS_PROMPTS[8] == "a video of a person {}."
    assert KINETICS_PROMPTS[-1] == "a demonstration of a person practicing {}."
    assert check_prompt_templates("a video of {}.") == ("a video of {}.",)
    for bad in ([], ["no placeholder"], ["{} and {}"]):
        with pytest.raises(ValueError, match="exactly one"):
            check_prompt_templates(bad)


def test_template_averaging_equals_a_hand_computation(model):
    templates = ["a video of {}.", "{}", "footage of a {} moving"]
    got = class_embeddings(model, CLASSES, templates, batch_size=2)  # chunks cross class boundaries
    with torch.no_grad():
        for c, name in enumerate(CLASSES):
            # each prompt alone, normalized, averaged, normalized again
            rows = [
                F.normalize(model.text_proj(model.text.encode([t.format(name)]).pooled), dim=-1)
                for t in templates
            ]
            expected = F.normalize(torch.cat(rows).mean(dim=0), dim=-1)
            torch.testing.assert_close(got[c], expected, atol=1e-5, rtol=1e-5)
    # VideoTextPretrain's zero-shot validation uses the same function with its own templates
    task = VideoTextPretrain(create_backbone("vit_test"), text="text_test", proj_dim=16).eval()
    torch.testing.assert_close(
        task.class_embeddings(CLASSES), class_embeddings(task.model, CLASSES, DEFAULT_PROMPTS)
    )


def test_classification_reports_top1_of_the_prompt_classifier(model, tmp_path):
    task = ZeroShotClassification(model=model, prompt_templates=["a video of {}.", "a {}"], top_k=(1, 2))
    metrics = _trainer(tmp_path).test(task, datamodule=Clips(), verbose=False)[0]
    data = Clips()
    with torch.no_grad():
        classes = class_embeddings(model, CLASSES, ["a video of {}.", "a {}"])
        video = model.encode_video(torch.stack([item["video"] for item in data.items]))
    labels = torch.tensor([item["label"] for item in data.items])
    ranks = (video @ classes.T).argsort(dim=1, descending=True)
    assert metrics["test/top1"] == pytest.approx((ranks[:, 0] == labels).float().mean().item())
    assert metrics["test/top2"] == pytest.approx(
        (ranks[:, :2] == labels[:, None]).any(1).float().mean().item()
    )


def test_retrieval_feeds_retrieval_recall_every_pair(model, tmp_path):
    metrics = _trainer(tmp_path).test(ZeroShotRetrieval(model=model), datamodule=Clips(), verbose=False)[0]
    data = Clips()
    with torch.no_grad():
        text = model.encode_text([item["caption"] for item in data.items])
        video = model.encode_video(torch.stack([item["video"] for item in data.items]))
    similarity = text @ video.T
    expected = retrieval_metrics(similarity, torch.arange(5), prefix="t2v/")
    expected |= retrieval_metrics(similarity.T, torch.arange(5), prefix="v2t/")
    assert set(expected) == {k.removeprefix("test/") for k in metrics}
    for name, value in expected.items():
        assert metrics[f"test/{name}"] == pytest.approx(value, abs=1e-6), name


def test_training_is_refused(model, tmp_path):
    class Train(Clips):
        def train_dataloader(self):
            return self.test_dataloader()

    with pytest.raises(RuntimeError, match="vidlit test"):
        L.Trainer(default_root_dir=tmp_path, accelerator="cpu", logger=False, max_steps=1).fit(
            ZeroShotRetrieval(model=model), datamodule=Train()
        )


def test_checkpoint_loading_and_its_errors(model, tmp_path):
    folder = model.save_pretrained(tmp_path / "viclip_tiny")
    task = ZeroShotRetrieval(checkpoint=str(folder))  # a save_pretrained folder, read in setup()
    assert task.model is None
    task.setup("test")
    for key, value in model.state_dict().items():
        torch.testing.assert_close(task.model.state_dict()[key], value)
    assert not task.model.training
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        load_video_text_model(tmp_path / "missing.ckpt")
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="weights.bin: expected .* released ViCLIP file"):
        load_video_text_model(tmp_path / "weights.bin")
    # a .pth goes to the ViCLIP release loader, which names what is wrong with the file
    torch.save({"model": {"backbone.x": torch.zeros(1)}}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="other.pth"):
        load_video_text_model(tmp_path / "other.pth")
    torch.save(
        {"state_dict": {"backbone.x": torch.zeros(1)}, "pytorch-lightning_version": "2"}, tmp_path / "m.ckpt"
    )
    with pytest.raises(ValueError, match="m.ckpt: a Lightning checkpoint without a video-text model"):
        load_video_text_model(tmp_path / "m.ckpt")
    with pytest.raises(ValueError, match="needs a checkpoint"):
        ZeroShotClassification()
