import csv
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from vidlit.cli import main
from vidlit.config import config_error_line

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
        # Lightning's MisconfigurationException was a traceback (also --trainer.accelerator gpu without one)
        (
            ["--trainer.devices", "0"],
            "vidlit: error: trainer: `Trainer(devices='0')` value is not a valid input",
        ),
        # was "'config': Parser key "config": File does not exist: ..."
        (
            ["--config", "nope.yaml"],
            f"vidlit: error: --config '{Path('nope.yaml').resolve()}': file not found",
        ),
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


@pytest.mark.parametrize(("overlay", "key"), [("ave_weak", "data"), ("viclip_clip_towers", "model")])
def test_override_file_alone_is_one_line(overlay, key, capsys):
    # these recipes only complete another; alone they said "unknown key 'data.init_args.supervision'"
    # / "'model.init_args.backbone.init_args.name'", keys the recipe's classes do have
    line = _error_of(["fit", "--config", f"recipes/{overlay}.yaml"], capsys)
    assert line == (
        f"vidlit: error: '{key}' has init_args but no class_path: is this config an override file to "
        "give after a recipe (--config RECIPE --config FILE)?"
    )


@pytest.mark.parametrize(
    ("recipe", "line"),
    [
        ("zeroshot_cls", "model: ZeroShotClassification evaluates only"),
        ("retrieval_eval", "model: ZeroShotRetrieval evaluates only"),
    ],
)
def test_fitting_an_evaluation_recipe_is_one_line(recipe, line, tmp_path, monkeypatch, capsys):
    # it failed on a training list the recipe does not have (zeroshot_cls: "train.csv: video list
    # not found") or in a traceback (retrieval_eval's data module, in setup)
    monkeypatch.chdir(tmp_path)  # the recipes write their synthetic data to ./data
    repo = Path(__file__).resolve().parents[1]
    with pytest.raises(SystemExit) as exit_info:
        with monkeypatch.context() as m:
            m.setattr(sys, "argv", ["vidlit", "fit", "--config", str(repo / f"recipes/{recipe}.yaml")])
            main()
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"vidlit: error: {line} and has nothing to train: "
        "use `vidlit test` or `vidlit validate` with this config"
    ]


def test_predict_without_a_submission_format_is_one_line(tmp_path, capsys):
    # AVE (also LLP, music-dance, InternVid) has no submission format: predict ran every batch and
    # then failed in a traceback ("AVEDataModule has no write_submission(predictions, path) method")
    args = ["predict", "--config", "recipes/ave_mpn.yaml", "--data.init_args.root", str(tmp_path / "ave")]
    with pytest.raises(ValueError) as error:
        main([*args, "--trainer.default_root_dir", str(tmp_path / "runs")])
    assert str(error.value) == (
        "data: AVEDataModule has no submission format (write_submission) for `vidlit predict` to write: "
        "use `vidlit test` for its metrics or `vidlit infer` on one input"
    )


def test_predict_with_a_model_that_has_no_predictions_is_one_line(tmp_path, monkeypatch):
    # MVMPretrain has no predict_step: Lightning's default passed the batch dict to forward, which
    # failed in a traceback deep in the masking ("'dict' object has no attribute 'shape'")
    monkeypatch.chdir(tmp_path)  # the recipe writes its synthetic videos to ./data
    with pytest.raises(ValueError) as error:
        main(["predict", "--config", str(Path(__file__).resolve().parents[1] / "recipes/pretrain_mvm.yaml")])
    assert str(error.value) == (
        "model: MVMPretrain has no predictions for `vidlit predict` (no predict_step): use `vidlit test` "
        "for its metrics or `vidlit infer` on one input"
    )


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

    from vidlit.config import head_in_dim

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
    from vidlit.config import _accepts

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
    from vidlit.config import head_in_dim

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

    from vidlit.config import size_links

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


# --- the first hour: help, one-line errors, CPU threads, resume ----------------------------------


def test_help_lists_every_verb(capsys):
    from vidlit.cli import VERBS

    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for verb in ("fit", "validate", "test", "predict", *VERBS):
        assert verb in text
    assert {"data", "extract"} <= set(VERBS)
    for verb in VERBS:  # every entry dispatches to a function that exists
        with pytest.raises(SystemExit) as exit_info:
            main([verb, "--help"])
        assert exit_info.value.code == 0
        assert f"vidlit {verb}" in capsys.readouterr().out


def test_missing_checkpoint_is_one_line(mq_root, tmp_path, capsys):
    line = _error_of(
        ["test", "--config", RECIPE, "--data.init_args.root", str(mq_root), "--ckpt_path", "nothing.ckpt"]
        + ["--trainer.default_root_dir", str(tmp_path)],
        capsys,
    )
    assert line == "vidlit: error: --ckpt_path nothing.ckpt: checkpoint not found"


def test_best_from_the_command_line_is_one_line(mq_root, tmp_path, capsys):
    # Lightning's "best" exists only in the process that trained: a traceback before
    line = _error_of(
        ["test", "--config", RECIPE, "--data.init_args.root", str(mq_root), "--ckpt_path", "best"]
        + ["--trainer.default_root_dir", str(tmp_path)],
        capsys,
    )
    assert line.startswith("vidlit: error: --ckpt_path best: Lightning knows the best checkpoint only in")


def test_last_without_a_run_is_one_line(mq_root, tmp_path, capsys):
    line = _error_of(
        ["test", "--config", RECIPE, "--data.init_args.root", str(mq_root), "--ckpt_path", "last"]
        + ["--trainer.default_root_dir", str(tmp_path / "runs")],
        capsys,
    )
    assert line.startswith("vidlit: error: --ckpt_path last: no checkpoint under")


def test_progress_bar_off_overrides_the_recipes_bar(mq_root, tmp_path, capsys):
    # the MQ recipe lists a RichProgressBar; Lightning refuses it with enable_progress_bar=False
    main(
        ["fit", "--config", RECIPE, "--data.init_args.root", str(mq_root)]
        + ["--trainer.enable_progress_bar", "false", "--trainer.fast_dev_run", "true"]
        + ["--trainer.default_root_dir", str(tmp_path)]
    )
    lines = capsys.readouterr().out.splitlines()
    # vidlit's plain per-epoch line (printed when no bar is drawn), and no bar's "Epoch 0/0 ━━ ..."
    assert any(line.startswith("epoch 0/1 done in") for line in lines), lines
    assert not any(line.lstrip().startswith("Epoch 0") for line in lines), lines
    assert "vidlit: --trainer.enable_progress_bar false: leaving out the config's RichProgressBar" in lines
    # fast_dev_run is a smoke run: it leaves no checkpoint or config.yaml in default_root_dir (it
    # left checkpoints/last-vN.ckpt and overwrote config.yaml) and says so instead of "logs: None"
    assert sorted(p.name for p in tmp_path.rglob("*") if p.suffix in (".ckpt", ".yaml")) == []
    assert "fast_dev_run: no checkpoint, log or config.yaml was written" in lines, lines


def test_evaluating_last_takes_the_models_run_trained_otherwise(mq_root, tmp_path, capsys):
    # trained with shortened trainer settings, validated with the recipe's: the same model's run,
    # taken over a newer run of another model and said so
    main(
        ["fit", "--config", RECIPE, "--data.init_args.root", str(mq_root), "--trainer.max_epochs", "1"]
        + ["--trainer.limit_train_batches", "2", "--trainer.accumulate_grad_batches", "2"]
        + ["--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar", "false"]
    )
    main(
        ["fit", "--config", RECIPE, "--data.init_args.root", str(mq_root), "--trainer.max_epochs", "1"]
        + ["--trainer.limit_train_batches", "1", "--model.init_args.optimizer.init_args.lr", "0.5"]
        + ["--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar", "false"]
    )
    capsys.readouterr()
    filters = list(warnings.filters)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main(
            ["validate", "--config", RECIPE, "--data.init_args.root", str(mq_root), "--ckpt_path", "last"]
            + ["--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar", "false"]
        )
    chosen = [line for line in capsys.readouterr().out.splitlines() if "--ckpt_path last" in line]
    assert len(chosen) == 1 and "version_0/checkpoints/last.ckpt: NO run has exactly this" in chosen[0]
    assert "differs only in trainer, seed_everything" in chosen[0] and "optimizer.init_args.lr" in chosen[0]
    # no noise about the training run's checkpoint folder or Lightning's use of torch's pytree API,
    # and the filters that silence them are gone after main returns
    noise = [
        str(w.message)
        for w in caught
        if "dirpath has changed" in str(w.message) or "LeafSpec" in str(w.message)
    ]
    assert noise == [] and warnings.filters == filters, noise


def test_missing_logger_package_is_one_line(mq_root, tmp_path, capsys):
    import importlib.util

    if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"):
        pytest.skip("tensorboard is installed")
    line = _error_of(
        ["fit", "--config", RECIPE, "--data.init_args.root", str(mq_root)]
        + ["--trainer.logger", "lightning.pytorch.loggers.TensorBoardLogger"]
        + ["--trainer.logger.save_dir", str(tmp_path)],
        capsys,
    )
    assert line.endswith("TensorBoardLogger needs the 'tensorboard' package: pip install tensorboard")


def test_missing_package_line_names_the_module():
    from vidlit.config import missing_package_line

    try:
        try:
            import vidlit_no_such_module  # noqa: F401
        except ImportError as e:
            raise ValueError("Problem with given class_path 'mypkg.loggers.MyLogger':") from e
    except ValueError as e:
        error = e
    assert missing_package_line(error) == (
        "mypkg.loggers.MyLogger needs the 'vidlit_no_such_module' package: pip install vidlit_no_such_module"
    )
    assert missing_package_line(ValueError("bad value")) is None


def test_cpu_threads_choice_and_overrides(monkeypatch):
    import torch

    from vidlit.config import cpu_threads

    monkeypatch.setenv("VIDLIT_NUM_THREADS", "3")
    assert cpu_threads() == (3, "VIDLIT_NUM_THREADS")
    monkeypatch.setenv("VIDLIT_NUM_THREADS", "many")
    with pytest.raises(ValueError, match="VIDLIT_NUM_THREADS must be a positive integer, got 'many'"):
        cpu_threads()
    monkeypatch.delenv("VIDLIT_NUM_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert cpu_threads() == (torch.get_num_threads(), "OMP_NUM_THREADS")
    monkeypatch.delenv("OMP_NUM_THREADS")
    cores = len(os.sched_getaffinity(0))
    assert cpu_threads()[0] == max(1, min(4, cores // 2))


def test_openmp_waits_passively_unless_told_otherwise():
    code = "import os, vidlit.cli; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "PASSIVE"
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "ACTIVE"


@pytest.mark.slow
def test_killed_run_resumes_in_its_folder_with_its_top_k(mq_root, tmp_path, capsys):
    """SIGKILL after epoch 0, then `fit --ckpt_path last`: one version folder, one best checkpoint."""
    runs = tmp_path / "runs"
    args = ["fit", "--config", RECIPE, "--data.init_args.root", str(mq_root), "--trainer.default_root_dir"]
    args += [str(runs), "--trainer.max_epochs", "3", "--trainer.limit_train_batches", "1"]
    args += ["--trainer.limit_val_batches", "1", "--trainer.enable_model_summary", "false"]
    code = "import sys; from vidlit.cli import main; main(sys.argv[1:])"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    run = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True, env=env)
    last = runs / "version_0" / "checkpoints" / "last.ckpt"
    try:
        for line in run.stdout:  # not a terminal: vidlit prints one line per epoch
            if line.startswith("epoch 0/3 done"):
                break
        while not last.exists():  # epoch 0's checkpoint is written right after its line
            time.sleep(0.05)
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=60)
    finally:
        run.kill()
    assert [p.name for p in runs.iterdir()] == ["version_0"]
    resumed_from = torch.load(last, weights_only=True)["epoch"]
    with open(runs / "version_0" / "metrics.csv") as f:
        before = [r for r in csv.DictReader(f) if r["val/mAP"] and int(r["epoch"]) <= resumed_from]
    main([*args, "--ckpt_path", "last"])
    out = capsys.readouterr().out
    assert f"--ckpt_path last: resuming from {runs / 'version_0' / 'checkpoints' / 'last.ckpt'}" in out
    assert [p.name for p in runs.iterdir()] == ["version_0"]  # no version_1
    with open(runs / "version_0" / "metrics.csv") as f:
        scores = {int(r["epoch"]): float(r["val/mAP"]) for r in csv.DictReader(f) if r["val/mAP"]}
    assert sorted(scores) == [0, 1, 2]
    assert all(scores[int(r["epoch"])] == float(r["val/mAP"]) for r in before)  # the killed run's rows kept
    best = [p for p in (runs / "version_0" / "checkpoints").glob("*.ckpt") if p.name != "last.ckpt"]
    assert len(best) == 1  # save_top_k: 1 over all three epochs, not one per run segment
    checkpoint = torch.load(runs / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
    (state,) = [v for k, v in checkpoint["callbacks"].items() if "ResumableCheckpoint" in k]
    assert float(state["best_model_score"]) == pytest.approx(max(scores.values()), abs=1e-4)
    assert Path(state["best_model_path"]).name == best[0].name


@pytest.mark.slow
def test_a_resumed_fit_continues_its_wandb_run(mq_root, tmp_path, monkeypatch, capsys):
    """`fit --ckpt_path last` with W&B: the same W&B run id and its `<project>/<run id>` folder.

    The logger is given no folder: it saves under `default_root_dir`, nothing in the working
    directory (W&B's own default), so `--ckpt_path last` finds its checkpoints."""
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    wandb.finish()  # W&B keeps a run and its settings process-wide: start from none, as a process does
    wandb.teardown()
    runs = tmp_path / "runs"
    recipe = str(Path(__file__).resolve().parents[1] / RECIPE)  # the working directory is cwd
    args = ["fit", "--config", recipe, "--data.init_args.root", str(mq_root), "--trainer.default_root_dir"]
    args += [str(runs), "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1"]
    args += ["--trainer.enable_model_summary", "false", "--trainer.logger"]
    args += ["lightning.pytorch.loggers.WandbLogger"]
    try:
        main([*args, "--trainer.max_epochs", "1"])
        wandb.finish()
        (first,) = (runs / "lightning_logs").iterdir()
        main([*args, "--trainer.max_epochs", "2", "--ckpt_path", "last"])
        wandb.finish()
    finally:
        wandb.teardown()
    out = capsys.readouterr().out
    assert list((runs / "lightning_logs").iterdir()) == [first]  # no second run folder
    assert f"vidlit: continuing W&B run {first.name} of project lightning_logs" in out
    assert torch.load(first / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1
    offline = sorted((runs / "wandb").glob("offline-run-*"))
    assert len(offline) == 2 and {p.name.rsplit("-", 1)[1] for p in offline} == {first.name}
    # the record the resume read, beside config.yaml
    assert json.loads((first / "wandb_run.json").read_text()) == {
        "id": first.name,
        "project": "lightning_logs",
    }
    # a new fit (no checkpoint) is a new W&B run, as before
    main([*args, "--trainer.max_epochs", "1"])
    wandb.finish()
    wandb.teardown()
    assert len(list((runs / "lightning_logs").iterdir())) == 2
    assert not any(cwd.iterdir())  # W&B's files and the checkpoints all under default_root_dir


def test_a_missing_input_file_is_one_line(tmp_path, capsys, monkeypatch):
    """A file the run needs that is not there (here the zero-shot model's checkpoint, read in
    ``setup``): one line on the command line, exit status 1; from Python the exception itself."""
    argv = ["test", "--config", "recipes/zeroshot_cls.yaml", "--model.init_args.checkpoint",
            str(tmp_path / "nothing.ckpt"), "--data.init_args.root", str(tmp_path / "kinetics"),
            "--trainer.default_root_dir", str(tmp_path / "runs"), "--trainer.logger", "false"]  # fmt: skip
    monkeypatch.setattr("sys.argv", ["vidlit", *argv])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"vidlit: error: checkpoint not found: {tmp_path / 'nothing.ckpt'}"
    assert not any("Traceback" in line for line in err)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        main(argv)


def test_data_synth_refuses_a_folder_that_is_not_empty(tmp_path, capsys):
    """`--out` pointed at a folder of the user's own data would have its train.csv, videos/... replaced:
    refused in one line unless --overwrite; an empty folder is fine, a file is refused."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "moments_val.json").write_text("my own annotations")
    for out, message in [(mine, "mine: exists and is not empty"), (mine / "moments_val.json", "is a file")]:
        with pytest.raises(SystemExit) as exit_:
            main(["data", "synth", "ego4d_mq", "--out", str(out)])
        assert exit_.value.code == 2
        assert message in capsys.readouterr().err.strip().splitlines()[-1]
    assert (mine / "moments_val.json").read_text() == "my own annotations"
    main(["data", "synth", "ego4d_mq", "--out", str(mine), "--overwrite"])
    assert json.loads((mine / "moments_val.json").read_text())["videos"]
    (tmp_path / "empty").mkdir()
    main(["data", "synth", "ego4d_mq", "--out", str(tmp_path / "empty")])
    assert (tmp_path / "empty" / "moments_val.json").is_file()
