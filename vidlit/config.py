"""vidlit's configuration system: the LightningCLI subclass every run goes through.

:class:`VidlitCLI` parses a recipe (YAML + command-line overrides) into a model, a data module and
a trainer with vidlit's defaults (sizes linked from data and backbone into the head, atomic
checkpoints, ``--ckpt_path last`` resolution, the run folder, CPU threads). ``vidlit.cli`` (the
command) and ``vidlit.inference`` (rebuilding a run from its ``config.yaml``) both build on it, so
it sits below both.
"""

from __future__ import annotations

import ast
import csv
import difflib
import inspect
import os
import pickle
import re
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import lightning as L
import torch
import yaml
from jsonargparse._common import debug_mode_active
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.callbacks import ProgressBar, RichProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.plugins.io import CheckpointIO

# imported so that short class names (``class_path: ActionFormerHead``) resolve in YAML
import vidlit.data  # noqa: F401
import vidlit.heads  # noqa: F401
from vidlit.backbones import backbone_width, create_backbone
from vidlit.backbones._registry import declared_width
from vidlit.callbacks import (
    EpochLines,
    ReproducibleEpochs,
    SubmissionWriter,
    VersionTextRichProgressBar,
    run_dir,
    smoke_run,
)
from vidlit.checkpoint_io import (
    AtomicCheckpointIO,
    CheckpointChoice,
    find_last_checkpoint,
    remove_stale_temporaries,
    run_folder,
)
from vidlit.core.errors import ConfigurationError
from vidlit.core.imports import import_path
from vidlit.core.io import read_json, write_json_atomic
from vidlit.tasks import TaskModule  # noqa: F401

# What may change when a run is resumed: training longer is still the same run
STOPPING_KEYS = ("trainer.max_epochs", "trainer.max_steps", "trainer.max_time")
# what `test` / `validate` / `predict --ckpt_path last` may change from the run it evaluates and
# still prefer that run to others (said on the first line): how it was trained and run
EVALUATION_NEAR = ("trainer", "seed_everything")

# Lightning's special values of --ckpt_path; anything else is a file
_CKPT_KEYWORDS = ("last", "best", "hpc", "registry")

# Inside each checkpoint of a fit logged to W&B: its run ({"id", "project"}), for the resumes
# that find no run folder (a SLURM requeue resumes hpc_ckpt_N.ckpt of default_root_dir)
WANDB_RUN_KEY = "vidlit_wandb_run"
_HPC_CHECKPOINT = re.compile(r"hpc_ckpt_(\d+)\.ckpt")


def _section(config: Any) -> Any:
    """The running subcommand's part of a parsed config (``config.fit``); all of it without one.

    jsonargparse nests each subcommand's arguments under its name; a CLI built with ``run=False``
    has no subcommand. Read from the config itself, as ``VidlitCLI.subcommand`` is set only after
    parsing.
    """
    subcommand = config.get("subcommand")
    return config[subcommand] if subcommand else config


def _slurm_requeue_checkpoint(root: Path) -> Path | None:
    """The checkpoint Lightning resumes when ``fit`` has no ``ckpt_path`` (under SLURM, the newest
    ``hpc_ckpt_N.ckpt`` of ``default_root_dir``, saved before a requeue), or None."""
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    if not SLURMEnvironment.detect() or not root.is_dir():
        return None
    found = [(int(m[1]), p) for p in root.iterdir() if (m := _HPC_CHECKPOINT.fullmatch(p.name))]
    return max(found)[1] if found else None


def _checkpoint_wandb_run(checkpoint: Path) -> dict[str, Any] | None:
    """The W&B run recorded in a checkpoint (:data:`WANDB_RUN_KEY`), or None. Memory-mapped: the
    tensors are not read."""
    if not checkpoint.is_file():
        return None
    try:
        state = torch.load(checkpoint, map_location="cpu", mmap=True, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError):  # not one Lightning loads either: it says why
        return None
    record = state.get(WANDB_RUN_KEY) if isinstance(state, dict) else None
    return record if isinstance(record, dict) and "id" in record else None


# Beside a run's config.yaml: the W&B run it logged to, so that a resumed fit continues it
WANDB_RUN_FILE = "wandb_run.json"


_NOISE = ("Does not validate against", "Subtypes:", "Errors:", "Given value", "Expected a <class 'NoneType'>")


def _override_without_class_path(message: str) -> str | None:
    """The line for ``init_args`` with no ``class_path`` to give them to, else None.

    That is an override file (``recipes/ave_weak.yaml``, ``recipes/viclip_clip_towers.yaml``)
    given alone, without the recipe it completes; jsonargparse then tries the base class
    (``LightningDataModule``) and says "unknown key" of a key the recipe's class does have.
    """
    outer = re.match(r'Parser key "([^"]+)":', message)
    given = re.search(r"^\s*Given value: (\{.*)$", message, re.MULTILINE)
    tried = re.search(r"Problem with given class_path '([^']+)'", message)
    if not outer or not given or (tried and tried[1] not in _BASE_CLASSES):
        return None
    try:
        value = ast.literal_eval(given[1])
    except (ValueError, SyntaxError):
        return None
    if not isinstance(value, dict) or "init_args" not in value or "class_path" in value:
        return None
    return (
        f"'{outer[1]}' has init_args but no class_path: is this config an override file to give "
        f"after a recipe (--config RECIPE --config FILE)?"
    )


_BASE_CLASSES = ("lightning.LightningDataModule", "lightning.LightningModule")


def config_error_line(message: str) -> str:
    """Condense a jsonargparse error (nested over subclass types) into one line naming the key."""
    if m := re.search(r"Group '([^']+)' does not accept option '([^']+)'", message):
        return f"unknown key '{m[1]}.{m[2]}'"
    if m := re.match(r'Parser key "([^"]+)":\s+File does not exist: (.+)', message):
        return f"--{m[1]} {m[2].strip()}: file not found"
    if m := re.search(r"nrecognized arguments: --(\S+)", message):
        return f"unknown key '{m[1]}'"
    if line := _override_without_class_path(message):
        return line
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
    - without a ``trainer.logger``, runs log to CSV under ``trainer.default_root_dir``
      (``version_N/``), except ``predict``, which has no metrics and adds no folder;
    - the resolved config is saved as ``config.yaml`` in the run's folder, beside ``checkpoints/``,
      whatever the logger (:class:`RunConfig`);
    - ``--ckpt_path last`` picks the newest run under ``trainer.default_root_dir`` whose saved
      config matches this one (the stopping point aside when resuming, the data aside when
      evaluating, and evaluation falls back to the newest run, naming its differences)
      (:func:`vidlit.checkpoint_io.find_last_checkpoint`), says which and why, and a resumed
      ``fit`` continues that run's ``version_N`` folder, or its W&B run (id recorded beside
      ``config.yaml``); temporaries of killed checkpoint writes are removed on start;
    - on CPU the intra-op thread count is chosen for small runs (:func:`cpu_threads`) and said;
    - when stdout is not a terminal, one line per epoch and per validation (:class:`EpochLines`);
    - ``predict`` writes the dataset's official submission file (``--submission.path``).
    """

    def __init__(self, args: list[str] | None = None, run: bool = True, description: str | None = None):
        self.checkpoint_choice: CheckpointChoice | None = None
        super().__init__(
            model_class=L.LightningModule,
            datamodule_class=L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            parser_class=VidlitArgumentParser,
            parser_kwargs={"parser_mode": "omegaconf", "description": description},
            save_config_callback=RunConfig,
            auto_configure_optimizers=False,
            trainer_defaults={"callbacks": [ReproducibleEpochs(), EpochLines()]},
            args=args,
            run=run,
        )

    def instantiate_classes(self) -> None:
        self._wandb_under_root()
        try:
            super().instantiate_classes()
        except (ImportError, ValueError) as e:
            # an optional logger's package (tensorboard, wandb, ...): one line, not a traceback
            if (line := missing_package_line(e)) is None:
                raise
            sys.stderr.write(f"vidlit: error: {line}\n")
            sys.exit(2)

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        # instances cannot live in trainer_defaults (the saved config must serialize), so the
        # atomic checkpoint IO and the default CSV logger are added here
        config = _section(self.config_init).get("trainer", {})
        root = Path(config.get("default_root_dir") or ".")
        for path in remove_stale_temporaries(root):
            print(f"vidlit: removed {path}, a temporary file of a killed run")
        self._check_ckpt_path()
        self.checkpoint_choice = self._resolve_last_checkpoint(root)
        plugins = config.get("plugins") or []
        plugins = plugins if isinstance(plugins, list) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            kwargs["plugins"] = [*plugins, AtomicCheckpointIO()]
        if config.get("logger") in (None, True):
            # CSV unless the config names a logger (Lightning would pick TensorBoard when
            # installed); predict has no metrics to log, so it adds no version folder
            kwargs["logger"] = self._csv_logger(root) if self.subcommand != "predict" else False
        elif (continued := self._continued_wandb_run(config["logger"], root)) is not None:
            kwargs["logger"] = continued
        callbacks = config.get("callbacks") or []
        if config.get("enable_progress_bar") is False and any(isinstance(c, ProgressBar) for c in callbacks):
            # a recipe's progress bar gives way to --trainer.enable_progress_bar false (batch jobs'
            # logs) instead of Lightning refusing the pair
            dropped = ", ".join(type(c).__name__ for c in callbacks if isinstance(c, ProgressBar))
            print(f"vidlit: --trainer.enable_progress_bar false: leaving out the config's {dropped}")
            kwargs["callbacks"] = callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
        for callback in callbacks:
            if type(callback) is RichProgressBar:
                # same state and arguments; only shows the integer version as ``v_num: 0``
                callback.__class__ = VersionTextRichProgressBar
        try:
            trainer = super().instantiate_trainer(**kwargs)
        except MisconfigurationException as e:
            # trainer settings the machine or Lightning refuses (`--trainer.accelerator gpu` on a
            # machine without one, `--trainer.devices 0`): Lightning's one sentence, not a traceback
            sys.stderr.write(f"vidlit: error: trainer: {e}\n")
            sys.exit(2)
        if isinstance(trainer.accelerator, CPUAccelerator):
            try:
                threads, why = cpu_threads()
            except ValueError as e:
                sys.stderr.write(f"vidlit: error: {e}\n")
                sys.exit(2)
            torch.set_num_threads(threads)
            print(
                f"vidlit: running on CPU with {threads} intra-op thread{'s' * (threads > 1)} ({why}; "
                f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}); "
                "set VIDLIT_NUM_THREADS to change"
            )
        return trainer

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
        links = size_links(_section(self.config))
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

    def _wandb_under_root(self) -> None:
        """A ``WandbLogger`` given no folder (``save_dir`` ``.``, no ``dir``) saves in ``default_root_dir``.

        W&B's default is the current directory: its files went to ``./wandb`` and the checkpoints to
        ``./<project>/<run id>/``, outside the run's root, where ``--ckpt_path last`` never looked.
        Set before the logger is built, so the saved config says where it went.
        """
        trainer = _section(self.config).get("trainer")
        root = trainer.get("default_root_dir") if trainer is not None else None
        specs = trainer.get("logger") if trainer is not None else None
        if not root or not specs:
            return
        for spec in specs if isinstance(specs, list) else [specs]:
            if not hasattr(spec, "get") or not str(spec.get("class_path", "")).endswith("WandbLogger"):
                continue
            init = spec.get("init_args")
            if init is not None and init.get("save_dir") in (None, ".") and init.get("dir") is None:
                init["save_dir"] = str(root)

    def _csv_logger(self, root: Path) -> CSVLogger:
        """The default logger; a resumed ``fit`` continues the ``version_N`` folder of its checkpoint."""
        config = _section(self.config_init)
        version = None
        if self.subcommand in (None, "fit") and config.get("ckpt_path") not in (None, *_CKPT_KEYWORDS):
            checkpoint = Path(config["ckpt_path"])
            run = run_folder(checkpoint, root)
            if run is not None and run.parent.resolve() == root.resolve():
                if m := re.fullmatch(r"version_(\d+)", run.name):
                    version = int(m[1])
        logger = CSVLogger(save_dir=root, name="", version=version)
        if version is not None:
            _keep_logged_rows(logger, checkpoint)
        return logger

    def _continued_wandb_run(self, loggers: Any, root: Path) -> Any | None:
        """On a resumed ``fit``, the configured loggers with the W&B one continuing its checkpoint's run.

        The W&B run a ``fit`` logged to is recorded beside its ``config.yaml`` (:data:`WANDB_RUN_FILE`,
        written by :class:`RunConfig`) and inside each checkpoint (:data:`WANDB_RUN_KEY`). When this
        ``fit`` resumes from a checkpoint of that run (``--ckpt_path``, or with none under SLURM the
        newest ``hpc_ckpt_N.ckpt`` of ``default_root_dir`` that Lightning resumes after a requeue)
        and configures a ``WandbLogger`` of the same project without an ``id`` / ``version`` of its
        own, the logger is built again with the recorded id (Lightning passes ``resume="allow"``),
        so the metrics continue the same W&B run and the checkpoints its ``<project>/<run id>``
        folder, as a CSV run continues its ``version_N``. None when nothing changes.
        """
        config = _section(self.config_init)
        ckpt_path = config.get("ckpt_path")
        if self.subcommand not in (None, "fit"):
            return None
        if ckpt_path is None:  # a SLURM requeue: Lightning resumes its hpc checkpoint by itself
            checkpoint = _slurm_requeue_checkpoint(root)
            if checkpoint is None:
                return None
            record, where = _checkpoint_wandb_run(checkpoint), checkpoint
        elif ckpt_path in _CKPT_KEYWORDS or "://" in str(ckpt_path):
            return None
        else:
            checkpoint = Path(ckpt_path)
            run = run_folder(checkpoint, checkpoint.parent.parent)  # <run>/checkpoints/x.ckpt or <run>/x.ckpt
            if run is not None and (run / WANDB_RUN_FILE).is_file():
                where = run / WANDB_RUN_FILE
                record = read_json(where, "W&B run record")
            else:
                record, where = _checkpoint_wandb_run(checkpoint), checkpoint
        if record is None:
            return None
        trainer = _section(self.config)["trainer"]
        built = loggers if isinstance(loggers, list) else [loggers]
        specs = trainer["logger"] if isinstance(trainer["logger"], list) else [trainer["logger"]]
        continued, changed = [], False
        for logger, spec in zip(built, specs):
            if (
                isinstance(logger, WandbLogger)
                and logger.version is None
                and logger.name == record.get("project")
            ):
                init = {
                    **_as_dict(spec.get("init_args")),
                    **_as_dict(spec.get("dict_kwargs")),
                    "id": record["id"],
                }
                logger = type(logger)(**init)
                print(f"vidlit: continuing W&B run {record['id']} of project {logger.name} ({where})")
                changed = True
            continued.append(logger)
        if not changed:
            return None
        return continued if isinstance(loggers, list) else continued[0]

    def _check_ckpt_path(self) -> None:
        """A ``--ckpt_path`` file that does not exist: one line, before anything is built."""
        path = _section(self.config_init).get("ckpt_path")
        if path == "best":
            # Lightning knows "best" only within the process that trained: from the command line
            # it failed in a traceback saying ModelCheckpoint "is not configured to save the best model"
            sys.stderr.write(
                "vidlit: error: --ckpt_path best: Lightning knows the best checkpoint only in the process "
                "that trained; give its file (`vidlit fit` prints it: best checkpoint: ...) or `last`\n"
            )
            sys.exit(2)
        if path is None or path in _CKPT_KEYWORDS or "://" in str(path) or Path(path).is_file():
            return
        sys.stderr.write(f"vidlit: error: --ckpt_path {path}: checkpoint not found\n")
        sys.exit(2)

    def _resolve_last_checkpoint(self, root: Path) -> CheckpointChoice | None:
        config = _section(self.config_init)
        if config.get("ckpt_path") != "last":
            return None
        parser = self._parser(self.subcommand)
        current = yaml.safe_load(parser.dump(_section(self.config), skip_unset=False)) or {}
        try:
            if self.subcommand == "fit":
                # resuming needs the same model and data; a new stopping point extends the run
                choice = find_last_checkpoint(root, current, ignore=STOPPING_KEYS)
            else:
                # evaluating may use other data or another split; a run of this exact
                # configuration first, else the newest run of this model trained or run with
                # other trainer / seed settings (devices, precision, a --trainer.max_epochs 1
                # try), else the newest run: the last two said loudly
                choice = find_last_checkpoint(
                    root, current, ignore=("data",), fallback=True, near=EVALUATION_NEAR
                )
        except FileNotFoundError as e:
            sys.stderr.write(f"vidlit: error: {e}\n")
            sys.exit(2)
        config["ckpt_path"] = str(choice.path)
        verb = "resuming from" if self.subcommand == "fit" else "using"
        print(f"vidlit: --ckpt_path last: {verb} {choice.path}: {choice.reason}")
        return choice

    def before_fit(self) -> None:
        # an evaluation-only model (zero-shot) or data module (retrieval lists): one line before
        # any data is read; fit otherwise failed on a training list such recipes do not have
        for part, key in ((self.model, "model"), (self.datamodule, "data")):
            if getattr(part, "evaluation_only", False):
                raise ConfigurationError(
                    f"{key}: {type(part).__name__} evaluates only and has nothing to train: "
                    "use `vidlit test` or `vidlit validate` with this config"
                )

    def before_predict(self) -> None:
        # the submission is written after every batch was predicted: a data module with no
        # submission format failed there, in a traceback, after the whole loop
        if type(self.model).predict_step is L.LightningModule.predict_step:
            # Lightning's default calls forward(batch): MVMPretrain failed deep in its masking
            raise ConfigurationError(
                f"model: {type(self.model).__name__} has no predictions for `vidlit predict` (no "
                "predict_step): use `vidlit test` for its metrics or `vidlit infer` on one input"
            )
        if self.datamodule is not None and not hasattr(self.datamodule, "write_submission"):
            raise ConfigurationError(
                f"data: {type(self.datamodule).__name__} has no submission format (write_submission) for "
                "`vidlit predict` to write: use `vidlit test` for its metrics or `vidlit infer` on one input"
            )

    def after_fit(self) -> None:
        log_dir = self.trainer.log_dir  # a collective under DDP: every rank must ask
        if not self.trainer.is_global_zero:
            return
        metrics = {k: float(v) for k, v in self.trainer.callback_metrics.items() if k.startswith("val/")}
        checkpoint = self.trainer.checkpoint_callback
        from rich.console import Console
        from rich.table import Table

        console = Console()
        if metrics:
            table = Table(title=f"Validation metrics, epoch {self.trainer.current_epoch - 1}", min_width=40)
            table.add_column("metric")
            table.add_column("value", justify="right")
            for name, value in sorted(metrics.items()):
                table.add_row(name, f"{value:.4f}")
            console.print(table)
        else:
            every = self.trainer.check_val_every_n_epoch
            console.print(
                "no validation metrics: validation never ran"
                + (
                    f" (it runs every {every} epochs and the run had {self.trainer.current_epoch}; "
                    f"set --trainer.check_val_every_n_epoch or --trainer.max_epochs to a multiple)"
                    if every and every > self.trainer.current_epoch
                    else ""
                ),
                soft_wrap=True,
            )
        if smoke_run(self.trainer):
            console.print("fast_dev_run: no checkpoint, log or config.yaml was written", soft_wrap=True)
            return
        if checkpoint is not None:
            console.print(f"best checkpoint: {checkpoint.best_model_path or '-'}", soft_wrap=True)
            console.print(f"last checkpoint: {checkpoint.last_model_path or '-'}", soft_wrap=True)
        console.print(
            f"logs: {log_dir}; resolved config: {run_dir(self.trainer) / 'config.yaml'}", soft_wrap=True
        )


# packages Lightning's optional loggers need, by logger class name
LOGGER_PACKAGES = {
    "TensorBoardLogger": "tensorboard",
    "WandbLogger": "wandb",
    "MLFlowLogger": "mlflow",
    "CometLogger": "comet-ml",
    "NeptuneLogger": "neptune",
}


def missing_package_line(error: BaseException) -> str | None:
    """One line naming the package to install when ``error`` comes from a missing optional
    dependency (a class of the config could not be built without it); None for other errors."""
    missing = error
    while missing is not None and not isinstance(missing, ImportError):
        missing = missing.__cause__ or missing.__context__
    if missing is None:
        return None
    m = re.search(r"class_path '([^']+)'", str(error))
    class_path = m[1] if m else ""
    package = LOGGER_PACKAGES.get(class_path.rpartition(".")[2])
    if package is None and (hint := re.search(r"pip install (?:-U )?'?([A-Za-z0-9_.\-]+)", str(missing))):
        package = hint[1]
    package = package or (missing.name or "").split(".")[0]
    if not package:
        return None
    needs = f"{class_path} needs" if class_path else "missing"
    return f"{needs} the '{package}' package: pip install {package}"


def cpu_threads() -> tuple[int, str]:
    """The intra-op thread count for a run on CPU, and where it comes from.

    ``VIDLIT_NUM_THREADS`` when set; else an explicit ``OMP_NUM_THREADS`` (torch already applied
    it); else half the cores this process may use, at most 4: vidlit's CPU runs are small (sample
    data, heads on stored features), gain little from more threads, and on a machine shared with
    other jobs extra threads mostly wait on each other.
    """
    if value := os.environ.get("VIDLIT_NUM_THREADS"):
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"VIDLIT_NUM_THREADS must be a positive integer, got {value!r}")
        return int(value), "VIDLIT_NUM_THREADS"
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads(), "OMP_NUM_THREADS"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(4, cores // 2)), f"default for {cores} core{'s' * (cores > 1)}"


def _as_dict(namespace: Any) -> dict[str, Any]:
    """A parsed config section (a jsonargparse ``Namespace``, a dict or None) as a plain dict."""
    if namespace is None:
        return {}
    return namespace.as_dict() if hasattr(namespace, "as_dict") else dict(namespace)


def _keep_logged_rows(logger: CSVLogger, checkpoint: Path) -> None:
    """Carry a resumed run's ``metrics.csv`` rows up to its checkpoint's epoch into the continued log.

    Lightning's CSV writer deletes an existing ``metrics.csv`` when it opens a version folder;
    rows logged after the checkpoint (by the killed run) are dropped, the resumed run logs them anew.
    """
    path = Path(logger.log_dir) / "metrics.csv"
    if not path.is_file():
        return
    epoch = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True).get("epoch", -1)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        keys = list(reader.fieldnames or [])
        rows = [row for row in reader if row.get("epoch", "") == "" or int(float(row["epoch"])) <= epoch]
    with warnings.catch_warnings():  # "previous log files will be deleted": not so, they are kept here
        warnings.filterwarnings("ignore", message="Experiment logs directory")
        writer = logger.experiment  # opening it removes the old file
    writer.metrics_keys = keys
    writer.metrics = rows + writer.metrics


class RunConfig(SaveConfigCallback):
    """Save the resolved config as ``config.yaml`` in the run's folder, beside ``checkpoints/``.

    Lightning's ``SaveConfigCallback`` writes to ``trainer.log_dir``, which for W&B is the shared
    ``save_dir``, so a second run stopped with "expected config.yaml to NOT exist". Here the
    config goes where the run's checkpoints go (:func:`vidlit.callbacks.run_dir`), once per
    ``fit`` (test / predict write no run folder); a resumed run continues its folder and
    rewrites the file, which ``--ckpt_path last`` has checked to match.
    """

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.already_saved or stage != "fit" or smoke_run(trainer):
            return  # a smoke run would overwrite <default_root_dir>/config.yaml (see smoke_run)
        folder = trainer.strategy.broadcast(str(run_dir(trainer)))
        if trainer.is_global_zero:
            Path(folder).mkdir(parents=True, exist_ok=True)
            self.parser.save(
                self.config,
                str(Path(folder) / self.config_filename),
                skip_unset=False,
                overwrite=True,
                multifile=self.multifile,
            )
            self.save_config(trainer, pl_module, stage)
            if wandb := next((lg for lg in trainer.loggers if isinstance(lg, WandbLogger)), None):
                # the run id, for a resumed fit to continue (VidlitCLI._continued_wandb_run)
                write_json_atomic({"id": wandb.version, "project": wandb.name}, Path(folder) / WANDB_RUN_FILE)
        self.already_saved = trainer.strategy.broadcast(True)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        # the W&B run in the checkpoint too: a SLURM requeue resumes hpc_ckpt_N.ckpt, outside the
        # run folder that holds wandb_run.json (VidlitCLI._continued_wandb_run)
        if wandb := next((lg for lg in trainer.loggers if isinstance(lg, WandbLogger)), None):
            checkpoint[WANDB_RUN_KEY] = {"id": wandb.version, "project": wandb.name}
