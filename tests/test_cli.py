import json
import subprocess
import sys

import pytest

from vidlit.cli import config_error_line, main

RECIPE = "recipes/ego4d_mq.yaml"


def _error_of(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("vidlit: error:")]
    assert len(lines) == 1
    return lines[0]


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (["--trainer.max_epochz", "3"], "unknown key 'trainer.max_epochz'"),
        (
            ["--model.init_args.head.init_args.windw", "3"],
            "unknown key 'model.init_args.head.init_args.windw'",
        ),
        (["--data.init_args.batch_size", "many"], "'data.init_args.batch_size': expected int, got 'many'"),
    ],
)
def test_bad_config_is_one_line_naming_the_key(override, expected, capsys):
    line = _error_of(["fit", "--config", RECIPE, *override], capsys)
    assert expected in line


def test_bad_key_in_yaml_file(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  init_args:\n    optimizer:\n      init_args:\n        lrr: 0.1\n")
    line = _error_of(["fit", "--config", RECIPE, "--config", str(bad)], capsys)
    assert "unknown key 'model.init_args.optimizer.init_args.lrr'" in line


def test_config_error_line_nested_message():
    message = """Parser key "model":
  Does not validate against any of the Union subtypes
  Errors:
    - Problem with given class_path 'vidlit.tasks.TaskModule':
        Parser key "head":
          Problem with given class_path 'mypkg.Head':
            Parser key "levels":
              Expected a <class 'int'>. Got value: eight
    - Expected a <class 'NoneType'>
  Given value type: <class 'dict'>"""
    assert config_error_line(message) == "'model.init_args.head.init_args.levels': expected int, got 'eight'"


def test_data_synth_command(tmp_path):
    main(["data", "synth", "ego4d_mq", "--out", str(tmp_path / "mq"), "--seed", "3"])
    doc = json.loads((tmp_path / "mq" / "moments_val.json").read_text())
    clip = doc["videos"][0]["clips"][0]
    assert (tmp_path / "mq" / "features" / f"{clip['clip_uid']}.pt").is_file()
    assert {"start_time", "end_time", "label", "primary"} <= set(clip["annotations"][0]["labels"][0])


def test_console_script_is_installed():
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from importlib.metadata import entry_points; "
            "print([e.value for e in entry_points(group='console_scripts') if e.name == 'vidlit'])",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "vidlit.cli:main" in out.stdout


def test_head_in_dim_comes_from_backbone_or_data():
    from jsonargparse import Namespace

    from vidlit.cli import head_in_dim

    data = Namespace(class_path="vidlit.data.Ego4DMQ", init_args=Namespace(feature_dim=256))
    assert head_in_dim(None, data) == 256
    vit = Namespace(class_path="vidlit.backbones.VideoViT", init_args=Namespace(embed_dim=96))
    assert head_in_dim(vit, data) == 96
    named = Namespace(
        class_path="vidlit.backbones.create_backbone", init_args=Namespace(name="vit_base_patch16_16x224")
    )
    assert head_in_dim(named, None) == 768
    with pytest.raises(ValueError, match="no feature_dim"):
        head_in_dim(None, Namespace(class_path="mypkg.Data", init_args=Namespace()))


def test_model_flags_with_a_function_backbone(capsys):
    """``--model.init_args.*`` flags work when the backbone's class_path is create_backbone (a function)."""
    args = ["--model.init_args.freeze_backbone", "true"]
    args += ["--model.init_args.backbone.init_args.name", "vit_small_patch16_16x224"]
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", "recipes/video_cls.yaml", *args, "--print_config"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "freeze_backbone: true" in out and "name: vit_small_patch16_16x224" in out


def _sta_annotations(root, num_nouns, num_verbs):
    """An Ego4D v2 ``fho_sta_train.json`` with one annotated frame and the given category lists."""
    root.mkdir()
    box = {"box": [1.0, 2.0, 9.0, 12.0], "noun_category_id": 0, "verb_category_id": 0, "time_to_contact": 0.5}
    frame = {
        "uid": "v_0000003",
        "video_uid": "v",
        "frame": 3,
        "clip_uid": "v",
        "clip_frame": 3,
        "objects": [box],
    }
    (root / "fho_sta_train.json").write_text(
        json.dumps(
            {
                "info": {"version": "v2", "split": "train"},
                "noun_categories": [{"id": i, "name": f"noun{i}"} for i in range(num_nouns)],
                "verb_categories": [{"id": i, "name": f"verb{i}"} for i in range(num_verbs)],
                "annotations": [frame],
            }
        )
    )


def test_sta_head_takes_num_verbs_and_num_classes_from_the_data(tmp_path):
    """The STA recipe states no class counts: both come from the annotation file's category lists."""
    from vidlit.cli import VidlitCLI

    _sta_annotations(tmp_path / "sta", num_nouns=5, num_verbs=7)
    cli = VidlitCLI(
        args=["--config", "recipes/ego4d_sta.yaml", "--data.init_args.root", str(tmp_path / "sta")], run=False
    )
    assert (cli.model.head.num_classes, cli.model.head.num_verbs) == (5, 7)
    assert cli.model.head.verb.out_features == 7


def test_num_verbs_is_linked_only_into_heads_that_name_it():
    from vidlit.cli import _accepts

    sta = "vidlit.heads.ego4d_sta.ShortTermAnticipationHead"
    assert _accepts(sta, "num_verbs", explicit=True)
    assert not _accepts("vidlit.heads.ego4d_mq.ActionFormerHead", "num_verbs", explicit=True)
    # **kwargs takes num_classes, but num_verbs only by name
    assert _accepts("lightning.LightningModule", "num_classes")
    assert not _accepts("lightning.LightningModule", "num_verbs", explicit=True)


def test_head_in_dim_reads_declared_widths_without_building():
    """Widths come from declarations: the model function is never called to size the head."""
    from jsonargparse import Namespace

    from vidlit.backbones import _registry, backbone_width, register_backbone
    from vidlit.cli import head_in_dim

    def vit_test_unbuildable_probe(embed_dim: int = 48, **kwargs):
        raise AssertionError("built to learn its width")

    saved = dict(_registry._BACKBONES)
    try:
        register_backbone(vit_test_unbuildable_probe)
        assert backbone_width("vit_test_unbuildable_probe") == 48
        assert backbone_width("vit_test_unbuildable_probe", embed_dim=32) == 32
        named = Namespace(
            class_path="vidlit.backbones.create_backbone",
            init_args=Namespace(name="vit_test_unbuildable_probe"),
        )
        assert head_in_dim(named, None) == 48
    finally:
        _registry._BACKBONES.clear()
        _registry._BACKBONES.update(saved)
    # a class: the default of its embed_dim argument
    vit = Namespace(class_path="vidlit.backbones.VideoViT", init_args=Namespace())
    assert head_in_dim(vit, None) == 768
    with pytest.raises(ValueError, match="torch.nn.Identity declares no width"):
        head_in_dim(Namespace(class_path="torch.nn.Identity", init_args=Namespace()), None)


def test_size_links_follow_what_head_and_data_declare():
    """Only the data sizes a head names and its data module provides are linked; none without a head."""
    from jsonargparse import Namespace

    from vidlit.cli import size_links

    def config(head, data):
        model = Namespace(head=None if head is None else Namespace(class_path=head, init_args=Namespace()))
        return Namespace(model=Namespace(class_path="m", init_args=model), data=Namespace(class_path=data))

    sta_head = "vidlit.heads.ego4d_sta.ShortTermAnticipationHead"
    sta_data = "vidlit.data.ego4d_sta.Ego4DSTA"
    assert size_links(config(sta_head, sta_data)) == ("num_classes", "num_verbs")
    assert size_links(config("vidlit.heads.LinearProbeHead", sta_data)) == ("num_classes",)
    assert size_links(config("vidlit.heads.ego4d_nlq.VSLNetHead", "vidlit.data.ego4d_nlq.Ego4DNLQ")) == ()
    assert size_links(config(None, "vidlit.data.VideoListDataModule")) == ()


def test_pretraining_recipe_saves_no_head_sizes(tmp_path):
    """A model without a head gets no size link, so its saved hyperparameters hold no head keys."""
    from vidlit.cli import VidlitCLI

    cli = VidlitCLI(
        args=["--config", "recipes/pretrain_mvm.yaml", "--data.init_args.root", str(tmp_path / "v")],
        run=False,
    )
    assert cli._size_links == ()
    assert "head" not in cli.model.hparams
