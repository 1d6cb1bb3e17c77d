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
import os
import sys
import warnings
from pathlib import Path
from typing import Any

# OpenMP reads its wait policy once, when torch loads it: set before anything imports torch.
# Passive waiting puts idle intra-op threads to sleep instead of spinning, which on a shared or
# busy machine cost up to 18x the CPU time of a small run. An explicit OMP_WAIT_POLICY wins.
if "torch" not in sys.modules:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from vidlit.core.imports import import_path  # noqa: E402

__all__ = ["VERBS", "data_main", "main"]  # and VidlitCLI, imported on first use (__getattr__)

DESCRIPTION = (
    "vidlit: train and evaluate video understanding models from a YAML recipe "
    "(e.g. `vidlit fit --config recipes/ego4d_mq.yaml`)."
)

# The verbs besides Lightning's fit / validate / test / predict: name -> ("module:function", help).
# The function takes the rest of the command line. `vidlit --help` lists this table, and main()
# dispatches on it: a new verb is one line here.
VERBS: dict[str, tuple[str, str]] = {
    "data": ("vidlit.cli:data_main", "dataset tools: synth sample data, check video lists"),
    "extract": ("vidlit.extract:extract_main", "write per-video [T, C] features with a trained backbone"),
    "curate": ("vidlit.curate:curate_main", "score clip-caption pairs, keep the best: video-text shards"),
    "infer": ("vidlit.inference:infer_main", "run a trained checkpoint on one video"),
    "serve": ("vidlit.serve:serve_main", "HTTP API and pointing page (needs the `serve` extra)"),
}


def description() -> str:
    """The text of ``vidlit --help``: what the command does and every verb of :data:`VERBS`."""
    verbs = "; ".join(f"`vidlit {name}` ({help})" for name, (_, help) in VERBS.items())
    return f"{DESCRIPTION} More verbs: {verbs}; each takes --help."


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
    synth.add_argument(
        "--overwrite",
        action="store_true",
        help="write into a folder that is not empty (its files of the sample's names are replaced)",
    )
    from vidlit.check import HELP as CHECK_HELP
    from vidlit.check import add_arguments as add_check_arguments

    check = commands.add_parser("check", help=CHECK_HELP, description=CHECK_HELP)
    add_check_arguments(check)
    commands.add_parser("curate", help="deprecated: use `vidlit curate`", add_help=False)
    options = parser.parse_args(args)
    if options.command == "synth":
        # the sample's train.csv, videos/000000.mp4, ... would replace a user's files of those names
        if options.out.exists() and not (options.out.is_dir() and not any(options.out.iterdir())):
            if not options.out.is_dir():
                parser.error(f"{options.out}: is a file; --out is the folder to write the sample into")
            if not options.overwrite:
                parser.error(
                    f"{options.out}: exists and is not empty (a sample written before, or data of yours "
                    "whose files of the same names it would replace); pass --overwrite to write into it"
                )
        out = SYNTHESIZERS[options.task](options.out, seed=options.seed)
        print(f"wrote synthetic {options.task} sample data to {out}")
    elif options.command == "check":
        from vidlit.check import check_main

        check_main(options, check)


def _quiet_library_noise(argv: list[str]) -> None:
    """Warnings every run would print that say nothing about the user's run (filters of the
    caller's ``warnings.catch_warnings()``, so ``main`` called from Python leaves none behind)."""
    # Lightning 2.6's own pytree helper uses torch's deprecated LeafSpec on every fit and test
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    # the first subcommand word: options such as `-c run.yaml` may come before it
    subcommand = next((a for a in argv if a in ("fit", "validate", "test", "predict")), None)
    if subcommand != "fit":
        # evaluating a checkpoint restores its ModelCheckpoint state into this run's (new) log
        # folder; which best-k files the training run kept matters only to a resumed fit
        warnings.filterwarnings("ignore", message="The dirpath has changed from")


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
    if argv[:1] and argv[0] in VERBS:
        try:  # e.g. `serve` without its extra: one line naming the missing module
            verb = import_path(VERBS[argv[0]][0], what=f"vidlit {argv[0]}")
        except ValueError as e:
            sys.stderr.write(f"vidlit: error: {e}\n")
            sys.exit(2)
        verb(argv[1:])
        return
    _wandb_offline_without_credentials()
    from vidlit.core.errors import ConfigurationError
    from vidlit.formats import AnnotationError
    from vidlit.tasks.empty_batches import NoReadableVideosError

    try:
        from vidlit.config import VidlitCLI  # lightning, torch and every family: only for these verbs

        with warnings.catch_warnings():
            _quiet_library_noise(argv)
            VidlitCLI(args=args, description=description())
    except NoReadableVideosError as e:  # a whole split unreadable: one line, not a traceback
        sys.stderr.write(f"vidlit: error: {e}\n")
        sys.exit(1)
    except (ValueError, FileNotFoundError) as e:
        # a malformed annotation file, a missing input file (data, checkpoint) or settings that
        # conflict: its one line, not a traceback; also when jsonargparse wraps it in a link's error
        # (a class list read to size the head). Other ValueErrors keep their traceback: they may
        # be vidlit's own bugs.
        cause: BaseException | None = e
        while cause is not None and not isinstance(
            cause, AnnotationError | FileNotFoundError | ConfigurationError
        ):
            cause = cause.__cause__
        if cause is None:
            raise
        if args is not None:  # called from Python: let the caller see the exception
            raise cause from None
        sys.stderr.write(f"vidlit: error: {cause}\n")
        sys.exit(1)


def __getattr__(name: str) -> Any:
    # `from vidlit.cli import VidlitCLI` keeps working without importing lightning for every verb
    if name == "VidlitCLI":
        from vidlit.config import VidlitCLI

        return VidlitCLI
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    main()
