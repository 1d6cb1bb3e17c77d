"""Shared fixtures: sample datasets are generated once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
torch.set_num_threads(min(2, torch.get_num_threads()))

ROOT = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def one_thread():
    """Run a test with one intra-op thread: tiny tensors gain nothing from more, and OpenMP
    threads spin badly on a busy CI machine."""
    from vidlit.core.device import torch_threads

    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def mq_root(tmp_path_factory) -> Path:
    """The synthetic Ego4D MQ sample dataset the recipe uses, generated once."""
    from vidlit.data.synth.ego4d_mq import write_ego4d_mq

    return write_ego4d_mq(tmp_path_factory.mktemp("ego4d_mq") / "data")
