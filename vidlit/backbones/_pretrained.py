"""vidlit's own save format: a folder with ``config.json`` and ``model.safetensors``.

The layout of huggingface_hub's ``ModelHubMixin`` (and of transformers' ``save_pretrained``), so a
saved folder can be pushed to and pulled from the Hugging Face Hub as it is. ``config.json`` names
the architecture and holds the constructor arguments::

    {"vidlit_format": 1, "architecture": "VideoViT", "vidlit_version": "0.1.0",
     "config": {"img_size": [224, 224], "embed_dim": 768, ...}}

``model.safetensors`` holds the state dict (no pickle on loading). A class joins by subclassing
:class:`PretrainedMixin` and returning its constructor arguments from ``pretrained_config`` (JSON
values only) and rebuilding itself from them in ``from_pretrained_config``.

Why not ``huggingface_hub.PyTorchModelHubMixin`` itself: it records the constructor's
JSON-serializable arguments and silently leaves out the rest, but :class:`VideoTextModel` takes its
video and text towers as built modules (nested configs are needed), and
``VideoViT.from_pretrained`` already reads foreign checkpoints (transformers VideoMAE folders,
``.pth`` files) that the mixin's ``from_pretrained`` would replace. The Hub part (download,
upload) uses huggingface_hub's functions directly.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from torch import Tensor, nn

from vidlit.core.io import write_atomic, write_json_atomic

__all__ = [
    "CONFIG_NAME",
    "FORMAT_KEY",
    "WEIGHTS_NAME",
    "PretrainedMixin",
    "architecture_of",
    "architectures",
    "init_arguments",
    "is_vidlit_folder",
    "load_any_vidlit_folder",
    "check_state_dict",
    "load_state_dict_checked",
    "warn_caller",
    "read_pretrained_config",
    "resolve_pretrained_dir",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_KEY = "vidlit_format"
FORMAT_VERSION = 1

_ARCHITECTURES: dict[str, type[PretrainedMixin]] = {}
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# a missing path with one of these suffixes is a file, never a Hub repo id
_FILE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors", ".json")

ModelType = TypeVar("ModelType", bound="PretrainedMixin")

_BACKBONES_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn_caller(message: str) -> None:
    """``warnings.warn(message)`` attributed to the first frame outside ``vidlit/backbones``.

    A loader's warning is reached through different depths of backbone code (a tower's own load,
    ``load_viclip_checkpoint``, ``load_clip_weights``, ``from_pretrained``): a fixed ``stacklevel``
    names the right line for one entry point only. This names the first caller outside the
    backbones for all of them (the user's line, or vidlit's own code that built the backbone)
    (Python 3.12's ``skip_file_prefixes`` does the same; vidlit supports 3.10).
    """
    level, frame = 1, sys._getframe(0)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_BACKBONES_DIR):
        level, frame = level + 1, frame.f_back
    warnings.warn(message, stacklevel=level)


def architectures() -> list[str]:
    """Sorted names of the classes that ``config.json`` may name as its architecture."""
    return sorted(_ARCHITECTURES)


def init_arguments(function: Any, frame_locals: Mapping[str, Any]) -> dict[str, Any]:
    """The named arguments of ``function`` (an ``__init__``) as it was called, from its ``locals()``.

    Call first thing in ``__init__``: ``self._init_args = init_arguments(VideoViT.__init__, locals())``.
    Tuples become lists, as JSON writes them.
    """
    names = [p for p in inspect.signature(function).parameters if p != "self"]
    return {name: _jsonable(frame_locals[name]) for name in names}


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return value


def is_vidlit_folder(path: Path) -> bool:
    """Whether ``path`` is a folder that :meth:`PretrainedMixin.save_pretrained` wrote."""
    config = path / CONFIG_NAME
    if not (path.is_dir() and config.is_file()):
        return False
    try:
        document = json.loads(config.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(document, dict) and FORMAT_KEY in document


def resolve_pretrained_dir(path_or_repo: str | Path, revision: str | None = None) -> Path:
    """A local folder as it is, or a Hub repo id (``owner/name``) downloaded to the local cache.

    Raises:
        FileNotFoundError: for a path that does not exist and is no repo id, or a repo that cannot be
            downloaded (offline, private, missing), naming both readings.
    """
    path = Path(path_or_repo)
    if path.exists():
        return path
    if not _REPO_ID.match(str(path_or_repo)) or path.suffix in _FILE_SUFFIXES:
        raise FileNotFoundError(f"checkpoint not found: {path}")
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(
            str(path_or_repo), revision=revision, allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, "README.md"]
        )
    except Exception as err:  # offline, gated, missing: huggingface_hub raises several types
        raise FileNotFoundError(
            f"{path_or_repo}: no such local folder, and not downloadable as a Hub repo "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        ) from err
    return Path(folder)


def read_pretrained_config(path: Path) -> tuple[type[PretrainedMixin], dict[str, Any]]:
    """The class and constructor arguments a saved folder's ``config.json`` names.

    Raises:
        FileNotFoundError: without ``config.json``.
        ValueError: a config that is not vidlit's, or names an unknown architecture.
    """
    config_file = path / CONFIG_NAME
    if not config_file.is_file():
        raise FileNotFoundError(f"{path}: no {CONFIG_NAME}")
    try:
        document = json.loads(config_file.read_text())
    except ValueError as err:
        raise ValueError(f"{config_file}: not valid JSON ({err})") from err
    return architecture_of(document, str(config_file), top_level=True)


def architecture_of(
    document: Any, source: str, top_level: bool = False
) -> tuple[type[PretrainedMixin], dict[str, Any]]:
    """The class and arguments of ``{"architecture": name, "config": {...}}`` (a config or a nested tower).

    Raises:
        ValueError: one line, for a missing format key (``top_level``), an unknown architecture or a
            config that is not an object.
    """
    if not isinstance(document, dict):
        raise ValueError(f"{source}: expected an object with 'architecture' and 'config'")
    if top_level and FORMAT_KEY not in document:
        raise ValueError(f"{source}: not a vidlit config (no {FORMAT_KEY!r} key)")
    name = document.get("architecture")
    if name not in _ARCHITECTURES:
        raise ValueError(
            f"{source}: key 'architecture': unknown {name!r}; known: {', '.join(architectures())}"
        )
    config = document.get("config")
    if not isinstance(config, dict):
        raise ValueError(f"{source}: key 'config': expected an object of constructor arguments")
    return _ARCHITECTURES[name], config


def load_state_dict_checked(
    model: nn.Module, state_dict: Mapping[str, Tensor], source: str, strict: bool = True, prefix: str = ""
) -> None:
    """Load a state dict that must match the model's keys and shapes exactly.

    The checks are :func:`check_state_dict`'s; nothing is loaded when they raise.
    """
    model.load_state_dict(check_state_dict(model, state_dict, source, strict, prefix), strict=strict)


def check_state_dict(
    model: nn.Module, state_dict: Mapping[str, Tensor], source: str, strict: bool = True, prefix: str = ""
) -> dict[str, Tensor]:
    """Check a state dict against the model's keys and shapes; load nothing.

    Args:
        model: the model to load into.
        state_dict: the weights.
        source: the file, for messages.
        strict: missing or unexpected keys raise; otherwise they warn and the rest loads.
        prefix: where ``model``'s weights sit in a larger file (``"text_encoder."`` in a ViCLIP
            checkpoint); messages name keys with it, as the file does.

    Returns:
        the tensors to load (without the unexpected ones when not ``strict``).

    Raises:
        ValueError: one line naming the missing and unexpected keys (when strict), or the
            mismatched shapes.
    """
    own = model.state_dict()
    missing = sorted(prefix + k for k in own if k not in state_dict)
    unexpected = sorted(prefix + k for k in state_dict if k not in own)
    if missing or unexpected:
        message = f"{source}: missing keys {missing}, unexpected keys {unexpected}"
        if strict:
            raise ValueError(message)
        warn_caller(message)
        state_dict = {k: v for k, v in state_dict.items() if k in own}
    bad = [
        f"{prefix}{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state_dict.items()
        if v.shape != own[k].shape
    ]
    if bad:
        raise ValueError(f"{source}: shape mismatch for " + "; ".join(bad))
    return dict(state_dict)


def _unshared(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    # safetensors refuses tensors that share memory (tied weights, views of one buffer); every key
    # after the first on a storage gets its own copy, so the file has every key of the state dict.
    seen: set[int] = set()
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        value = value.detach().cpu()
        storage = value.untyped_storage().data_ptr()
        out[key] = value.clone() if storage in seen or not value.is_contiguous() else value
        seen.add(storage)
    return out


class PretrainedMixin:
    """``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` for vidlit's own models.

    A subclass (an ``nn.Module``) implements :meth:`pretrained_config`; the default
    :meth:`from_pretrained_config` calls the constructor with those arguments. Subclasses are
    registered as architectures under their class name.
    """

    architecture: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.architecture = cls.__name__
        existing = _ARCHITECTURES.get(cls.__name__)
        if existing is not None and existing.__module__ != cls.__module__:
            raise ValueError(f"architecture {cls.__name__!r} is already registered by {existing.__module__}")
        _ARCHITECTURES[cls.__name__] = cls

    def pretrained_config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this model (JSON values)."""
        raise NotImplementedError(f"{type(self).__name__} does not define pretrained_config()")

    @classmethod
    def from_pretrained_config(cls: type[ModelType], config: dict[str, Any]) -> ModelType:
        """Build an untrained model from :meth:`pretrained_config`'s arguments."""
        return cls(**config)

    @classmethod
    def build_for_loading(cls: type[ModelType], config: dict[str, Any]) -> ModelType:
        """A model whose every saved tensor is about to be replaced by a strict load.

        By default :meth:`from_pretrained_config`; a class whose random initialization is slow and
        that can rebuild its non-persistent buffers overrides this to skip it (VideoViT: built on
        the meta device, then allocated).
        """
        return cls.from_pretrained_config(config)

    def pretrained_document(self) -> dict[str, Any]:
        """The whole ``config.json``: format, architecture, vidlit version and the config."""
        from vidlit import __version__

        return {
            FORMAT_KEY: FORMAT_VERSION,
            "architecture": type(self).architecture,
            "vidlit_version": __version__,
            "config": self.pretrained_config(),
        }

    def save_pretrained(self, save_directory: str | Path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into a folder (created if needed).

        Returns:
            the folder.
        """
        from safetensors.torch import save

        if not isinstance(self, nn.Module):
            raise TypeError(f"{type(self).__name__} mixes in PretrainedMixin but is no torch.nn.Module")
        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        document = self.pretrained_document()
        json.dumps(document)  # fail before writing anything if a value is not JSON
        write_atomic(save(_unshared(self.state_dict()), metadata={"format": "pt"}), folder / WEIGHTS_NAME)
        write_json_atomic(document, folder / CONFIG_NAME)
        return folder

    @classmethod
    def from_pretrained(cls: type[ModelType], path_or_repo: str | Path, **overrides: Any) -> ModelType:
        """Build the model a :meth:`save_pretrained` folder (or a Hub repo id) holds and load its weights.

        Args:
            path_or_repo: the folder, or ``owner/name`` on the Hub (downloaded when online).
            **overrides: constructor arguments replacing the saved ones (e.g. ``drop_path_rate``).

        Raises:
            ValueError: an unknown architecture, or missing / unexpected keys, named in one line.
        """
        return cls._from_vidlit_folder(resolve_pretrained_dir(path_or_repo), overrides)

    @classmethod
    def _from_vidlit_folder(
        cls: type[ModelType], folder: Path, overrides: Mapping[str, Any] | None = None, strict: bool = True
    ) -> ModelType:
        from safetensors.torch import load_file

        arch, config = read_pretrained_config(folder)
        config = {**config, **(overrides or {})}
        if not issubclass(arch, cls):
            raise ValueError(
                f"{folder / CONFIG_NAME}: key 'architecture': {arch.__name__!r} is not a {cls.__name__}"
            )
        weights = folder / WEIGHTS_NAME
        if not weights.is_file():
            raise FileNotFoundError(f"{folder}: no {WEIGHTS_NAME}")
        # uninitialized tensors only where a strict load replaces every one of them
        model = arch.build_for_loading(config) if strict else arch.from_pretrained_config(config)
        load_state_dict_checked(model, load_file(str(weights), device="cpu"), str(weights), strict)
        return model

    def load_vidlit_folder(self, folder: Path, strict: bool = True) -> None:
        """Load a saved folder's weights into this model as built (same architecture and config).

        Training-only arguments (dropout, stochastic depth, activation checkpointing, freezing) may
        differ; any other config difference is an error, because weights of another configuration
        can load without a shape error and compute something else.

        Raises:
            ValueError: another architecture, a differing config (naming the keys), or missing or
                unexpected weights (naming them).
        """
        from safetensors.torch import load_file

        arch, config = read_pretrained_config(folder)
        if arch is not type(self):
            raise ValueError(
                f"{folder / CONFIG_NAME}: key 'architecture': {arch.__name__!r}, but the model is a "
                f"{type(self).__name__}"
            )
        own = self.architecture_config(self.pretrained_config())
        config = self.architecture_config(config)
        differ = sorted(k for k in set(own) | set(config) if own.get(k) != config.get(k))
        if differ:
            detail = ", ".join(f"{k}: file {config.get(k)!r} vs model {own.get(k)!r}" for k in differ)
            raise ValueError(f"{folder / CONFIG_NAME}: config differs from the model's: {detail}")
        weights = folder / WEIGHTS_NAME
        if not weights.is_file():
            raise FileNotFoundError(f"{folder}: no {WEIGHTS_NAME}")
        if not isinstance(self, nn.Module):
            raise TypeError(f"{type(self).__name__} mixes in PretrainedMixin but is no torch.nn.Module")
        load_state_dict_checked(self, load_file(str(weights), device="cpu"), str(weights), strict)

    training_only_args: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def architecture_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        """``config`` without :attr:`training_only_args`: what must match to load weights into a model."""
        return {k: v for k, v in config.items() if k not in cls.training_only_args}

    def load_pretrained(self, path: str | Path, strict: bool = True) -> None:
        """Load a :meth:`save_pretrained` folder (or Hub repo id) into this model as built.

        What :func:`~vidlit.backbones.create_backbone`'s ``checkpoint_path`` calls; a backbone that
        also reads foreign layouts overrides it (as VideoViT does).

        Raises:
            ValueError: a path that is not such a folder, or see :meth:`load_vidlit_folder`.
        """
        folder = resolve_pretrained_dir(path)
        if not is_vidlit_folder(folder):
            raise ValueError(
                f"{folder}: not a folder that save_pretrained wrote ({CONFIG_NAME} with {FORMAT_KEY!r} "
                f"and {WEIGHTS_NAME}); {type(self).__name__} reads no other layout"
            )
        self.load_vidlit_folder(folder, strict=strict)

    def model_card(self) -> str:
        """The ``README.md`` that :meth:`push_to_hub` uploads: Hub metadata and how to load the model."""
        architecture = type(self).architecture
        return (
            "---\nlibrary_name: vidlit\ntags:\n- vidlit\n- video\n---\n\n"
            f"# {architecture}\n\n"
            "Saved with vidlit's `save_pretrained` (`config.json` + `model.safetensors`).\n\n"
            f"```python\nfrom vidlit.backbones import {architecture}\n\n"
            f'model = {architecture}.from_pretrained("<this repo id>")\n```\n'
        )

    def push_to_hub(
        self, repo_id: str, private: bool | None = None, token: str | None = None, commit_message: str = ""
    ) -> str:
        """Save to a temporary folder and upload it to a Hub model repo (created if needed; online).

        Returns:
            the URL of the commit.
        """
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp)
            write_atomic(self.model_card(), Path(tmp) / "README.md")
            info = api.upload_folder(
                repo_id=repo_id,
                folder_path=tmp,
                commit_message=commit_message or f"Upload {type(self).__name__} with vidlit",
            )
        return str(info)


def load_any_vidlit_folder(path_or_repo: str | Path) -> nn.Module:
    """Build the model a saved folder (or Hub repo) names, whatever its architecture."""
    folder = resolve_pretrained_dir(path_or_repo)
    arch, _ = read_pretrained_config(folder)
    return arch._from_vidlit_folder(folder)
