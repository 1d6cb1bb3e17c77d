"""The README's quick start, run as written (with short training overrides) on the sample data."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest

from vidlit.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()

# what makes each run short; the same for every command, so --ckpt_path last finds the runs
SHORT = (
    "--trainer.max_epochs 1 --trainer.limit_train_batches 2 --trainer.limit_val_batches 2 "
    "--trainer.limit_test_batches 2 --trainer.limit_predict_batches 2 --trainer.enable_model_summary false"
).split()


def quick_start_commands() -> list[tuple[dict[str, str], list[str]]]:
    """The ``vidlit`` commands of the README's quick start, in order: ``(env, argv)`` each."""
    section = README[README.index("## Quick start") : README.index("## Recipes")]
    commands = []
    lines = iter(section.splitlines())
    for line in lines:
        if not line.startswith("    ") or "vidlit " not in line:
            continue
        command = line.strip()
        while command.endswith("\\"):
            command = command[:-1] + next(lines).strip()
        words = shlex.split(command, comments=True)
        env = dict(word.split("=", 1) for word in words if re.fullmatch(r"[A-Z_]+=\S*", word))
        argv = [word for word in words if not re.fullmatch(r"[A-Z_]+=\S*", word)]
        if argv[0] == "vidlit":
            commands.append((env, argv[1:]))
    return commands


def _versions(runs: Path) -> list[str]:
    return sorted(p.name for p in runs.glob("version_*"))


@pytest.mark.slow
def test_quick_start_commands_run_in_order_twice(tmp_path, monkeypatch, capsys):
    """Fresh folder: fit (x2), test, predict, resume (x2), W&B (x2), as the README lists them."""
    wandb = pytest.importorskip("wandb")
    # W&B keeps a run and its settings (WANDB_DIR, ...) process-wide: start from none, as a new
    # process does
    wandb.finish()
    wandb.teardown()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "recipes").symlink_to(ROOT / "recipes")
    commands = quick_start_commands()
    verbs = [(argv[0], "--ckpt_path" in argv, "WandbLogger" in " ".join(argv)) for _, argv in commands]
    assert verbs == [
        ("fit", False, False),
        ("test", True, False),
        ("predict", True, False),
        ("predict", True, False),  # the test split: other data, the same model
        ("fit", True, False),
        ("fit", False, True),
    ]
    runs = tmp_path / "runs" / "ego4d_mq"
    for env, argv in commands:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        for attempt in range(2 if argv[0] == "fit" else 1):
            main([*argv, *SHORT])
            out = capsys.readouterr().out
            assert "vidlit: running on CPU with" in out
            if "WandbLogger" in " ".join(argv):
                wandb.finish()  # one process per command in real use
            elif argv[0] == "fit" and "--ckpt_path" not in argv:  # a new run each time
                folder = runs / f"version_{attempt}"
                assert {"config.yaml", "metrics.csv", "checkpoints"} <= {p.name for p in folder.iterdir()}
                assert (folder / "checkpoints" / "last.ckpt").is_file()
            else:  # test, predict and resume: the newest run of this configuration
                verb = "resuming from" if argv[0] == "fit" else "using"
                chosen = Path("runs/ego4d_mq/version_1/checkpoints/last.ckpt")
                assert f"vidlit: --ckpt_path last: {verb} {chosen}" in out
                assert "Resuming from" not in out
                # test logs its metrics in a folder of its own; predict and resume add none
                assert _versions(runs) == ["version_0", "version_1", "version_2"]
                assert {p.name for p in (runs / "version_2").iterdir()} == {"metrics.csv"}
    assert (tmp_path / "mq_submission.json").is_file() and (tmp_path / "mq_test_submission.json").is_file()
    # W&B, twice (project "ego4d", no save_dir): two runs, each with its config and checkpoints
    # where the README says, under default_root_dir
    wandb_runs = sorted((runs / "ego4d").iterdir())
    assert len(wandb_runs) == 2
    for run in wandb_runs:
        assert (run / "config.yaml").is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    offline = sorted((runs / "wandb").glob("offline-run-*"))
    assert sorted(p.name.rsplit("-", 1)[1] for p in offline) == [p.name for p in wandb_runs]
    assert all(any(p.glob("*.wandb")) for p in offline)  # no empty offline run
    assert _versions(runs) == ["version_0", "version_1", "version_2"]


@pytest.mark.slow
def test_similarity_snippet_runs(tmp_path, monkeypatch, capsys):
    """The README's video-text snippet, on a checkpoint of a one-batch `pretrain_viclip` run."""
    from vidlit.data.synth.internvid import write_internvid

    monkeypatch.chdir(tmp_path)
    data = write_internvid(tmp_path / "internvid", num_train_videos=4, num_val_videos=2, clips_per_video=2)
    (tmp_path / "tiny.yaml").write_text("model:\n  init_args:\n    text: text_test\n    proj_dim: 32\n")
    main(
        ["fit", "--config", str(ROOT / "recipes/pretrain_viclip.yaml"), "--config", "tiny.yaml"]
        + ["--data.init_args.root", str(data), "--data.init_args.batch_size", "4"]
        + [
            "--trainer.max_epochs",
            "1",
            "--trainer.limit_train_batches",
            "1",
            "--trainer.limit_val_batches",
            "1",
        ]
        + ["--trainer.default_root_dir", "runs/pretrain_viclip", "--trainer.enable_model_summary", "false"]
    )
    # the recipe validates every 5 epochs: the run says so instead of an empty metrics table
    assert "no validation metrics: validation never ran (it runs every 5 epochs" in capsys.readouterr().out
    shutil.copy(next(data.rglob("*.mp4")), tmp_path / "my_clip.mp4")
    (snippet,) = [
        block for block in re.findall(r"```python\n(.*?)```", README, re.S) if "similarity(" in block
    ]
    scope: dict = {}
    exec(compile(snippet, "README.md", "exec"), scope)
    sim = scope["sim"]
    assert sim.shape == (1, 1) and -1.0 <= float(sim) <= 1.0
