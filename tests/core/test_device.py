import pytest
import torch

from vidlit.core.device import resolve_device


def test_auto_picks_cuda_only_when_available():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


@pytest.mark.parametrize("name", ["cpu", "cuda:1", torch.device("cpu")])
def test_other_names_are_torch_devices(name):
    assert resolve_device(name) == torch.device(name)
