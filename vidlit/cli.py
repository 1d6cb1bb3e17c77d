"""The ``vidlit`` command: LightningCLI for fit / validate / test / predict, plus ``vidlit data``.

Examples::

    vidlit fit --config recipes/ego4d_mq.yaml
    vidlit test --config recipes/ego4d_mq.yaml --ckpt_path last
    vidlit predict --config recipes/ego4d_mq.yaml --ckpt_path last --submission.path mq.json
    vidlit data synth ego4d_mq --out data/ego4d_mq_synth
    vidlit data curate sources.jsonl --ckpt_path viclip.ckpt --out data/curated --threshold 0.3
    vidlit extract --config recipes/pretrain_mvm.yaml --ckpt_path runs/pretrain_mvm/backbone.pt \
        --videos clips.csv --out features --window 16 --stride 16
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import inspect
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import lightning as L
import torch
from jsonargparse._common import debug_mode_active
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.io import CheckpointIO

# imported so that short class names (``class_path: ActionFormerHead``) resolve in YAML
import vidlit.data  # noqa: F401
import vidlit.heads  # noqa: F401
from vidlit.callbacks import ReproducibleEpochs, SubmissionWriter
from vidlit.checkpoint_io import AtomicCheckpointIO
from vidlit.formats import AnnotationError
from vidlit.tasks import TaskModule  # noqa: F401

DESCRIPTION = (
    "vidlit: train and evaluate video understanding models from a YAML recipe "
    "(e.g. `vidlit fit --config recipes/ego4d_mq.yaml`). Dataset tools: `vidlit data --help`."
)
_NOISE = ("Does not validate against", "Subtypes:", "Errors:", "Given value", "Expected a <class 'NoneType'>")


def config_error_line(message: str) -> str:
    """Condense a jsonargparse error (nested over subclass types) into one line naming the key."""
    if m := re.search(r"Group '([^']+)' does not accept option '([^']+)'", message):
        return f"unknown key '{m[1]}.{m[2]}'"
    if m := re.search(r"nrecognized arguments: --(\S+)", message):
        return f"unknown key '{m[1]}'"
    path: list[str] = []
    leaf = ""
    for raw in message.splitlines():
        line = raw.strip().removeprefix("- ").strip()
        if m := re.match(r'Parser key "([^"]+)"', line):
            path.append(m[1])
        elif line.startswith("Problem with given class_path"):
            path.append("init_args")
        elif line and not line.startswith(_NOISE) and not leaf:
            leaf = line
    leaf = leaf or message.strip().splitlines()[0]
    if "expects a function or a callable class" in leaf:
        path.append("init_args")
        leaf = leaf.split(": ", 1)[-1]
    if m := re.search(r"Option '([^']+)' is not accepted", leaf):
        return f"unknown key '{'.'.join([*path, m[1]])}'"
    if m := re.match(r"Expected a (?:<class '([^']+)'>|(.+?))\. Got value: (.*)", leaf):
        return f"'{'.'.join(path)}': expected {m[1] or m[2]}, got {m[3]!r}"
    key = ".".join(path)
    return f"'{key}': {leaf}" if key else leaf


class VidlitArgumentParser(LightningArgumentParser):
    """LightningArgumentParser whose errors are one readable line that names the config key."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error or debug_mode_active():
            super().error(message, ex)
        line = config_error_line(message)
        if m := re.match(r"unknown key '([^']+)'", line):
            known = [o.lstrip("-") for o in self._option_string_actions if o.startswith("--")]
            if close := difflib.get_close_matches(m[1], known, n=1):
                line += f" (did you mean '{close[0]}'?)"
        sys.stderr.write(f"vidlit: error: {line}\n(see `vidlit {{fit,validate,test,predict}} --help`)\n")
        sys.exit(2)

    def add_function_arguments(
        self, function: Any, *args: Any, linked_targets: Any = None, **kwargs: Any
    ) -> Any:
        # jsonargparse 4.53 passes ``linked_targets`` on to functions given as class_path (e.g.
        # ``vidlit.backbones.create_backbone``) whenever the model has links, and
        # add_function_arguments does not take it: any ``--model.init_args.X`` flag then failed.
        # Nothing links into a function's arguments here, so the set is not needed.
        return super().add_function_arguments(function, *args, **kwargs)


def head_in_dim(backbone: Any, data: Any) -> int:
    """The head's ``in_dim``: the backbone's width when the model has one, else ``data.feature_dim``.

    Works on the parsed (not yet instantiated) config: a backbone given by ``embed_dim`` (e.g.
    ``class_path: vidlit.backbones.VideoViT``) or by registered name
    (``class_path: vidlit.backbones.create_backbone``, ``init_args: {name: ...}``), which is
    built on the meta device to read its width without allocating weights.
    """
    if backbone is not None:
        init = getattr(backbone, "init_args", None) or {}
        if init.get("embed_dim") is not None:
            return int(init["embed_dim"])
        if init.get("name") is not None:
            from vidlit.backbones import create_backbone

            with torch.device("meta"):
                return int(create_backbone(init["name"]).embed_dim)
        raise ValueError("model.init_args.backbone: give its embed_dim or a registered name to size the head")
    init = getattr(data, "init_args", None) or {}
    if init.get("feature_dim") is None:
        name = getattr(data, "class_path", data)
        raise ValueError(f"data: {name} has no feature_dim to size the head's in_dim")
    return int(init["feature_dim"])


def _data_size(name: str) -> Callable[[L.LightningDataModule], int]:
    """``compute_fn`` of a link: the data module's attribute ``name``, or an error naming it."""

    def size(datamodule: L.LightningDataModule) -> int:
        if not hasattr(datamodule, name):
            raise ValueError(f"data: {type(datamodule).__name__} has no {name} to pass on to the head")
        return getattr(datamodule, name)

    size.__name__ = f"data_{name}"
    return size


_num_classes = _data_size("num_classes")

# Head init arguments the data module sizes once it exists (class lists are read from the
# annotation files): linked into every head that takes the argument (``num_classes`` also through
# ``**kwargs``), and only from a data module that has the attribute when ``explicit``.
DATA_LINKS = {"num_classes": False, "num_verbs": True}


def _import(class_path: str) -> Any:
    module, _, attr = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError):
        return None  # jsonargparse reports a bad class_path itself


def _accepts(class_path: str | None, name: str, explicit: bool = False) -> bool:
    """Whether the class at ``class_path`` takes an init argument ``name``.

    Args:
        class_path: the class; None or one that does not import counts as accepting.
        name: the argument.
        explicit: only a parameter of that name counts, not ``**kwargs``.
    """
    cls = _import(class_path) if class_path else None
    if cls is None:
        return not explicit
    params = inspect.signature(cls.__init__).parameters
    return name in params or (not explicit and any(p.kind is p.VAR_KEYWORD for p in params.values()))


class VidlitCLI(LightningCLI):
    """LightningCLI with vidlit's defaults.

    - model and data in subclass mode (``class_path`` + ``init_args``), OmegaConf interpolation;
    - optimizers and schedulers are ``TaskModule`` arguments (callables), not CLI magic;
    - the head's ``in_dim`` is the backbone's width, or the data module's ``feature_dim`` when
      heads train on stored features, and its ``num_classes`` (and ``num_verbs``, for heads that
      take it from a data module that has it, e.g. Ego4D STA) the data module's, so a recipe
      states each size once;
    - checkpoints are written atomically and loaded with ``weights_only=True``;
    - without a ``trainer.logger``, runs log to CSV under ``trainer.default_root_dir``;
    - ``--ckpt_path last`` finds the newest ``last.ckpt`` under ``trainer.default_root_dir``,
      including earlier versions' log folders, so a killed run resumes where it stopped;
    - ``predict`` writes the dataset's official submission file (``--submission.path``).
    """

    def __init__(self, args: list[str] | None = None, run: bool = True):
        super().__init__(
            model_class=L.LightningModule,
            datamodule_class=L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            parser_class=VidlitArgumentParser,
            parser_kwargs={"parser_mode": "omegaconf", "description": DESCRIPTION},
            auto_configure_optimizers=False,
            trainer_defaults={"callbacks": [ReproducibleEpochs()]},
            args=args,
            run=run,
        )

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        # instances cannot live in trainer_defaults (the saved config must serialize), so the
        # atomic checkpoint IO and the default CSV logger are added here
        config = self._get(self.config_init, "trainer", default={})
        plugins = config.get("plugins") or []
        plugins = plugins if isinstance(plugins, list) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            kwargs["plugins"] = [*plugins, AtomicCheckpointIO()]
        if config.get("logger") in (None, True):
            # CSV unless the config names a logger; Lightning would pick TensorBoard when installed
            kwargs["logger"] = CSVLogger(save_dir=config.get("default_root_dir") or ".", name="")
        return super().instantiate_trainer(**kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(SubmissionWriter, "submission")
        parser.link_arguments(
            ("model.init_args.backbone", "data"),
            "model.init_args.head.init_args.in_dim",
            compute_fn=head_in_dim,
        )
        # class lists are read from the annotation files, so they are known once data exists
        for name in DATA_LINKS:
            parser.link_arguments(
                "data",
                f"model.init_args.head.init_args.{name}",
                compute_fn=_data_size(name),
                apply_on="instantiate",
            )

    def before_instantiate_classes(self) -> None:
        # The head links size TaskModule's head. A model without a head (MVMPretrain) has nothing
        # to size, and a head without ``num_classes`` (NLQ spans, hand key points) takes no class
        # count; Lightning fails recording a link value into an init argument that is missing.
        # (This reaches into jsonargparse's private link group; tests/tasks/test_pretrain.py pins it.)
        config = self.config[self.subcommand] if self.subcommand else self.config
        head = (config.get("model.init_args") or {}).get("head")
        if head is None:
            dropped = ("model.init_args.head.",)
        else:
            head_class = getattr(head, "class_path", None)
            data_class = _import(getattr(config.get("data"), "class_path", None) or "")
            dropped = tuple(
                f"model.init_args.head.init_args.{name}"
                for name, explicit in DATA_LINKS.items()
                if not _accepts(head_class, name, explicit)
                # looked up on the CLASS: a data module offers an explicit link as a property (or
                # class attribute), not as an attribute its __init__ sets
                or (explicit and data_class is not None and not hasattr(data_class, name))
            )
        if not dropped:
            return
        group = self._parser(self.subcommand)._links_group
        group._group_actions = [a for a in group._group_actions if not a.target[0].startswith(dropped)]

    def _resolve_last_checkpoint(self) -> None:
        config = self.config_init[self.subcommand]
        if config.get("ckpt_path") != "last":
            return
        root = Path(self.trainer.default_root_dir)
        candidates = sorted(root.rglob("last*.ckpt"), key=lambda p: p.stat().st_mtime)
        if not candidates:
            raise FileNotFoundError(f"--ckpt_path last: no last.ckpt under {root} (trainer.default_root_dir)")
        config["ckpt_path"] = str(candidates[-1])
        print(f"Resuming from {candidates[-1]}")

    def before_fit(self) -> None:
        self._resolve_last_checkpoint()

    def before_validate(self) -> None:
        self._resolve_last_checkpoint()

    def before_test(self) -> None:
        self._resolve_last_checkpoint()

    def before_predict(self) -> None:
        self._resolve_last_checkpoint()

    def after_fit(self) -> None:
        log_dir = self.trainer.log_dir  # a collective under DDP: every rank must ask
        if not self.trainer.is_global_zero:
            return
        metrics = {k: float(v) for k, v in self.trainer.callback_metrics.items() if k.startswith("val/")}
        checkpoint = self.trainer.checkpoint_callback
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"Validation metrics, epoch {self.trainer.current_epoch - 1}", min_width=40)
        table.add_column("metric")
        table.add_column("value", justify="right")
        for name, value in sorted(metrics.items()):
            table.add_row(name, f"{value:.4f}")
        console = Console()
        console.print(table)
        if checkpoint is not None:
            console.print(f"best checkpoint: {checkpoint.best_model_path or '-'}")
            console.print(f"last checkpoint: {checkpoint.last_model_path or '-'}")
        console.print(f"logs and resolved config: {log_dir}")


def data_main(args: list[str]) -> None:
    """``vidlit data``: dataset tools (``synth`` sample datasets, ``check`` video lists, ``curate``)."""
    from vidlit.data.synth import SYNTHESIZERS
    from vidlit.data.video import BACKENDS

    parser = argparse.ArgumentParser(prog="vidlit data", description="Dataset tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    synth = commands.add_parser("synth", help="write a synthetic sample dataset in a task's official layout")
    synth.add_argument("task", choices=sorted(SYNTHESIZERS))
    synth.add_argument("--out", required=True, type=Path, help="output folder")
    synth.add_argument("--seed", type=int, default=0)
    check = commands.add_parser(
        "check", help="decode the first and last frame of every video in a list; exit 1 if any fails"
    )
    check.add_argument("list", type=Path, help="video list: CSV with a 'path' column, or JSONL")
    check.add_argument("--backend", default="auto", choices=("auto", *BACKENDS))
    check.add_argument("--workers", type=int, default=0, help="decoding processes (0: this one)")
    curate = commands.add_parser(
        "curate",
        help="cut source videos at shots, score clip-caption pairs with a VideoTextModel, keep those above "
        "a threshold: WebDataset shards + InternVid JSONL (resumable)",
    )
    from vidlit.data.curate import add_arguments as add_curate_arguments

    add_curate_arguments(curate)
    options = parser.parse_args(args)
    if options.command == "synth":
        out = SYNTHESIZERS[options.task](options.out, seed=options.seed)
        print(f"wrote synthetic {options.task} sample data to {out}")
    elif options.command == "check":
        from vidlit.data.video_list import check_videos, read_video_list

        try:
            entries = read_video_list(options.list)
        except (FileNotFoundError, ValueError) as e:
            check.error(str(e))
        reasons = check_videos([e.path for e in entries], options.backend, options.workers, progress=True)
        bad = [(entry, reason) for entry, reason in zip(entries, reasons) if reason is not None]
        print(f"{options.list}: {len(entries) - len(bad)} readable, {len(bad)} unreadable")
        for entry, reason in bad:
            print(f"  {entry.path} (line {entry.line}): {reason}")
        if bad:
            sys.exit(1)
    elif options.command == "curate":
        from vidlit.data.curate import curate_main
        from vidlit.tasks.video_text import VideoTextPretrain

        try:
            if not options.ckpt_path.is_file():
                raise FileNotFoundError(f"{options.ckpt_path}: checkpoint not found")
            task = VideoTextPretrain.load_from_checkpoint(
                options.ckpt_path, map_location="cpu", weights_only=True
            )
            curate_main(options, task.model, task.pixel_mean, task.pixel_std)
        except (FileNotFoundError, ValueError) as e:
            curate.error(str(e))


def _wandb_offline_without_credentials() -> None:
    # a run must never block on a W&B login prompt: without credentials, W&B logs offline
    if "WANDB_API_KEY" in os.environ or "WANDB_MODE" in os.environ:
        return
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    if not (netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")):
        os.environ["WANDB_MODE"] = "offline"


def main(args: list[str] | None = None) -> None:
    """Entry point of the ``vidlit`` command (``args`` defaults to ``sys.argv[1:]``)."""
    argv = sys.argv[1:] if args is None else list(args)
    if argv[:1] == ["data"]:
        data_main(argv[1:])
        return
    if argv[:1] == ["extract"]:
        from vidlit.extract import extract_main

        extract_main(argv[1:])
        return
    _wandb_offline_without_credentials()
    try:
        VidlitCLI(args=args)
    except ValueError as e:
        # a malformed annotation file (read in setup(), or for a linked class count) is one line,
        # also when jsonargparse wraps it in a link's error
        cause: BaseException | None = e
        while cause is not None and not isinstance(cause, AnnotationError):
            cause = cause.__cause__
        if cause is None:
            raise
        print(f"error: {cause}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
