"""`use_compile` is the one compile attribute of the task modules; `compile_backbone` is deprecated."""

from __future__ import annotations

import pytest

from vidlit.backbones import create_backbone
from vidlit.heads import LinearProbeHead
from vidlit.tasks import MVMPretrain, TaskModule, VideoTextPretrain


def _modules(compile: bool):
    backbone = dict(depth=1)
    decoder = dict(decoder_dim=32, decoder_depth=1, decoder_heads=4)
    return [
        TaskModule(LinearProbeHead(64, 3), backbone=create_backbone("vit_test", **backbone), compile=compile),
        MVMPretrain(create_backbone("vit_test", **backbone), compile=compile, **decoder),
        VideoTextPretrain(
            create_backbone("vit_test", **backbone), text="text_test", proj_dim=16, compile=compile
        ),
    ]


def test_every_task_module_keeps_compile_as_use_compile():
    assert [m.use_compile for m in _modules(compile=True)] == [True, True, True]


@pytest.mark.parametrize("index", [1, 2])
def test_compile_backbone_is_a_deprecated_alias(index):
    module = _modules(compile=False)[index]
    with pytest.warns(FutureWarning, match=r"compile_backbone is deprecated; use \.use_compile"):
        assert module.compile_backbone is False
    with pytest.warns(FutureWarning):
        module.compile_backbone = True
    assert module.use_compile is True
