"""The ``vidlit`` command: LightningCLI for fit / validate / test / predict, plus ``vidlit data``.

Examples::

    vidlit fit --config recipes/ego4d_mq.yaml
    vidlit test --config recipes/ego4d_mq.yaml --ckpt_path last
    vidlit predict --config recipes/ego4d_mq.yaml --ckpt_path last --submission.path mq.json
    vidlit data synth ego4d_mq --out data/ego4d_mq_synth
    vidlit curate sources.jsonl --ckpt_path viclip.ckpt --out data/curated --threshold 0.3
    vidlit extract --config recipes/pretrain_mvm.yaml --ckpt_path runs/pretrain_mvm/backbone.pt \
        --videos clips.csv --out features --window 16 --stride 16
"""

from __future__ import annotations

import argparse
import difflib
import inspect
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import lightning as L
from jsonargparse._common import debug_mode_active
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.io import CheckpointIO

# imported so that short class names (``class_path: ActionFormerHead``) resolve in YAML
import vidlit.data  # noqa: F401
import vidlit.heads  # noqa: F401
from vidlit.backbones import backbone_width, create_backbone
from vidlit.backbones._registry import declared_width
from vidlit.callbacks import ReproducibleEpochs, SubmissionWriter
from vidlit.checkpoint_io import AtomicCheckpointIO
from vidlit.core.imports import import_path
from vidlit.tasks import TaskModule  # noqa: F401

DESCRIPTION = (
    "vidlit: train and evaluate video understanding models from a YAML recipe "
    "(e.g. `vidlit fit --config recipes/ego4d_mq.yaml`). Other verbs: `vidlit extract --help` (features), "
    "`vidlit curate --help` (video-text pairs), `vidlit data --help` (synth, check)."
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
    """The head's ``in_dim``: the width the backbone declares, else the data module's ``feature_dim``.

    Works on the parsed (not yet instantiated) config, and builds nothing: a backbone given with
    ``embed_dim`` has that width; one given by registered name
    (``class_path: vidlit.backbones.create_backbone``, ``init_args: {name: ...}``) the width its
    model function declares (:func:`~vidlit.backbones.backbone_width`); any other class the
    default of its ``embed_dim`` argument or its ``embed_dim`` class attribute
    (``class_path: vidlit.backbones.VideoViT``: 768).
    """
    if backbone is not None:
        init = getattr(backbone, "init_args", None) or {}
        extra = getattr(backbone, "dict_kwargs", None) or {}
        width = init.get("embed_dim", extra.get("embed_dim"))
        if width is not None:
            return int(width)
        class_path = getattr(backbone, "class_path", None) or ""
        builder = _import(class_path)
        if init.get("name") is not None and builder in (None, create_backbone):
            return backbone_width(init["name"])
        width = declared_width(builder) if builder is not None else None
        if width is None:
            raise ValueError(
                f"model.init_args.backbone: {class_path} declares no width (an embed_dim argument with a "
                f"default, or an embed_dim class attribute); give init_args.embed_dim to size the head"
            )
        return width
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
# annotation files). A head declares the sizes it needs by naming them in its __init__
# (``num_classes`` also reaches a head through ``**kwargs``, unless ``explicit``); a data module
# declares the sizes it provides as class attributes or properties (``num_verbs`` is linked only
# from a data module that has it).
DATA_LINKS = {"num_classes": False, "num_verbs": True}


def _import(class_path: str) -> Any:
    try:
        return import_path(class_path)
    except ValueError:
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


def size_links(config: Any) -> tuple[str, ...]:
    """The data sizes (of :data:`DATA_LINKS`) that a parsed config's head takes and its data provides.

    Args:
        config: the parsed config of one subcommand (``model`` and ``data`` in subclass form).

    Returns:
        the names to link from the data module into the head; none for a model without a head.
    """
    head = (config.get("model.init_args") or {}).get("head")
    if head is None:
        return ()
    head_class = getattr(head, "class_path", None)
    data_class = _import(getattr(config.get("data"), "class_path", None) or "")
    return tuple(
        name
        for name, explicit in DATA_LINKS.items()
        if _accepts(head_class, name, explicit)
        # looked up on the CLASS: a data module offers an explicit size as a property (or class
        # attribute), not as an attribute its __init__ sets
        and not (explicit and data_class is not None and not hasattr(data_class, name))
    )


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

    # -- sizes: the head's in_dim, num_classes and num_verbs ---------------------------------------
    # The links are declared before the config is read, so the first parse declares every data
    # size link; once the head and data classes are known, the parser is built again with only the
    # links that apply (a link into an argument the head lacks, or into a missing head, would be
    # recorded into the saved hyperparameters by Lightning and break loading the checkpoint).

    def setup_parser(
        self, add_subcommands: bool, main_kwargs: dict[str, Any], subparser_kwargs: dict[str, Any]
    ) -> None:
        self._parser_setup = (add_subcommands, main_kwargs, subparser_kwargs)
        super().setup_parser(add_subcommands, main_kwargs, subparser_kwargs)

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        self._size_links: tuple[str, ...] = getattr(self, "_size_links", tuple(DATA_LINKS))
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        links = size_links(self.config[subcommand] if subcommand else self.config)
        if links == self._size_links:
            return
        self._size_links = links
        self.setup_parser(*self._parser_setup)
        super().parse_arguments(self.parser, args)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(SubmissionWriter, "submission")
        parser.link_arguments(
            ("model.init_args.backbone", "data"),
            "model.init_args.head.init_args.in_dim",
            compute_fn=head_in_dim,
        )
        # class lists are read from the annotation files, so they are known once data exists
        for name in getattr(self, "_size_links", DATA_LINKS):
            parser.link_arguments(
                "data",
                f"model.init_args.head.init_args.{name}",
                compute_fn=_data_size(name),
                apply_on="instantiate",
            )

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
    """``vidlit data``: dataset tools (``synth`` sample datasets, ``check`` video lists)."""
    from vidlit.data.synth import SYNTHESIZERS

    if args[:1] == ["curate"]:  # the verb's old place
        sys.stderr.write("vidlit: `vidlit data curate` is deprecated; use `vidlit curate` (same arguments)\n")
        from vidlit.curate import curate_main

        curate_main(args[1:])
        return
    parser = argparse.ArgumentParser(prog="vidlit data", description="Dataset tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    synth = commands.add_parser("synth", help="write a synthetic sample dataset in a task's official layout")
    synth.add_argument("task", choices=sorted(SYNTHESIZERS))
    synth.add_argument("--out", required=True, type=Path, help="output folder")
    synth.add_argument("--seed", type=int, default=0)
    from vidlit.check import HELP as CHECK_HELP
    from vidlit.check import add_arguments as add_check_arguments

    check = commands.add_parser("check", help=CHECK_HELP, description=CHECK_HELP)
    add_check_arguments(check)
    commands.add_parser("curate", help="deprecated: use `vidlit curate`", add_help=False)
    options = parser.parse_args(args)
    if options.command == "synth":
        out = SYNTHESIZERS[options.task](options.out, seed=options.seed)
        print(f"wrote synthetic {options.task} sample data to {out}")
    elif options.command == "check":
        from vidlit.check import check_main

        check_main(options, check)


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
    if argv[:1] == ["infer"]:
        from vidlit.inference import infer_main

        infer_main(argv[1:])
        return
    if argv[:1] == ["serve"]:
        from vidlit.serve import serve_main  # needs the `serve` extra (fastapi, uvicorn)

        serve_main(argv[1:])
        return
    if argv[:1] == ["extract"]:
        from vidlit.extract import extract_main

        extract_main(argv[1:])
        return
    if argv[:1] == ["curate"]:
        from vidlit.curate import curate_main

        curate_main(argv[1:])
        return
    _wandb_offline_without_credentials()
    from vidlit.formats import AnnotationError
    from vidlit.tasks.empty_batches import NoReadableVideosError

    try:
        VidlitCLI(args=args)
    except NoReadableVideosError as e:  # a whole split unreadable: one line, not a traceback
        sys.stderr.write(f"vidlit: error: {e}\n")
        sys.exit(1)
    except AnnotationError as e:  # a malformed annotation file: its one line, not a traceback
        if args is not None:  # called from Python: let the caller see the exception
            raise
        sys.stderr.write(f"vidlit: error: {e}\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
