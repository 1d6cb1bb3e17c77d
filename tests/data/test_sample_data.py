"""The README's ``vidlit data synth`` commands write exactly what the recipes read (one generator per root).

Each README command for the families below runs through ``vidlit.cli.main`` into a tmp folder
with the README's folder name; every recipe whose ``data.init_args.root`` is that folder then
sets up its data module there (``synthetic: true``: it must find a complete sample and write
nothing) and draws one training batch. Ego4D families are covered by their own tests.
"""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path

import pytest
import yaml

from vidlit.cli import main

REPO = Path(__file__).resolve().parents[2]
FAMILIES = ("videos", "internvid", "ave", "llp", "xd_violence", "music_dance", "loris", "kinetics", "msrvtt")
# evaluation-only recipes (zero-shot): their data modules serve a test split, not a training one
EVALUATION_RECIPES = ("zeroshot_cls.yaml", "retrieval_eval.yaml")


def _readme_commands() -> dict[str, str]:
    """task -> README output folder, for every ``vidlit data synth TASK --out DIR`` line."""
    text = (REPO / "README.md").read_text()
    commands = {}
    for line in re.findall(r"^\s*(vidlit data synth .*?)(?:#.*)?$", text, flags=re.M):
        args = shlex.split(line)
        commands[args[3]] = args[args.index("--out") + 1]
    return commands


def _recipes_by_root() -> dict[str, list[tuple[str, dict]]]:
    by_root: dict[str, list[tuple[str, dict]]] = {}
    for recipe in sorted((REPO / "recipes").glob("*.yaml")):
        data = (yaml.safe_load(recipe.read_text()) or {}).get("data")
        if not data or "root" not in data.get("init_args", {}):
            continue
        by_root.setdefault(data["init_args"]["root"], []).append((recipe.name, data))
    return by_root


def _data_module(data: dict, root: Path):
    module, _, name = data["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    return cls(**{**data["init_args"], "root": str(root), "num_workers": 0})


def test_every_recipe_root_has_one_readme_generator():
    commands, by_root = _readme_commands(), _recipes_by_root()
    assert set(FAMILIES) <= set(commands), commands
    roots = {commands[task] for task in FAMILIES}
    ours = {root: recipes for root, recipes in by_root.items() if not Path(root).name.startswith("ego4d")}
    # every sample root a recipe of these families reads is a README generator's output folder
    assert set(ours) <= roots, (sorted(ours), sorted(roots))


@pytest.mark.slow
@pytest.mark.parametrize("task", FAMILIES)
def test_readme_synth_output_sets_up_its_recipes(task, tmp_path, capsys):
    out = _readme_commands()[task]
    target = tmp_path / out
    main(["data", "synth", task, "--out", str(target)])
    assert f"wrote synthetic {task} sample data" in capsys.readouterr().out
    recipes = _recipes_by_root()[out]
    assert recipes, f"no recipe reads {out}"
    before = sorted(p.relative_to(target) for p in target.rglob("*"))
    for name, data in recipes:
        dm = _data_module(data, target)
        evaluation = name in EVALUATION_RECIPES
        dm.setup("test" if evaluation else "fit")
        batch = next(iter(dm.test_dataloader() if evaluation else dm.train_dataloader()))
        assert batch, name
    # the recipes found a complete sample and wrote nothing of their own
    assert sorted(p.relative_to(target) for p in target.rglob("*")) == before


@pytest.mark.parametrize(
    ("recipe", "task", "marker"),
    [
        ("video_cls.yaml", "videos", "train.csv"),
        ("llp.yaml", "llp", "AVVP_train.csv"),
        ("xd_violence.yaml", "xd_violence", None),
        ("pretrain_viclip.yaml", "internvid", None),
    ],
)
def test_an_incomplete_sample_folder_says_what_to_run(recipe, task, marker, tmp_path):
    data = yaml.safe_load((REPO / "recipes" / recipe).read_text())["data"]
    root = tmp_path / Path(data["init_args"]["root"]).name
    root.mkdir()
    (root / "videos.csv").write_text("path,label\n")  # e.g. another tool's output
    with pytest.raises(FileNotFoundError) as err:
        _data_module(data, root)
    message = str(err.value)
    assert "\n" not in message
    assert f"run `vidlit data synth {task} --out {root} --overwrite`" in message
    if marker:
        assert f"({marker} is missing)" in message
