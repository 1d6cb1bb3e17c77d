"""Every file the Ego4D sample-data writers produce is accepted by its family's contract and reader."""

from __future__ import annotations

import json

import pytest

from vidlit.data.ego4d_fhp import read_hand_annotations
from vidlit.data.ego4d_mq import read_moment_annotations
from vidlit.data.ego4d_nlq import read_nlq_annotations
from vidlit.data.ego4d_scod import read_scod_annotations
from vidlit.data.ego4d_sta import read_sta_annotations
from vidlit.data.synth import synthesize
from vidlit.formats._schema import validate
from vidlit.formats.ego4d_fhp import FHPFile
from vidlit.formats.ego4d_mq import MQFile
from vidlit.formats.ego4d_nlq import NLQFile
from vidlit.formats.ego4d_scod import SCODFile, scod_to_coco
from vidlit.formats.ego4d_sta import STAFile

SMALL = {"num_train": 2, "num_val": 1, "num_test": 1}
FAMILIES = {
    "ego4d_mq": ("moments_*.json", MQFile, read_moment_annotations, {**SMALL, "feature_dim": 8}),
    "ego4d_nlq": (
        "nlq_*.json",
        NLQFile,
        read_nlq_annotations,
        {"num_train_videos": 2, "num_val_videos": 1, "num_test_videos": 1, "feature_dim": 8},
    ),
    "ego4d_fhp": ("fho_hands_*.json", FHPFile, read_hand_annotations, {**SMALL, "size": 32}),
    "ego4d_scod": ("fho_scod_*.json", SCODFile, read_scod_annotations, {**SMALL, "size": 32}),
    "ego4d_sta": ("fho_sta_*.json", STAFile, read_sta_annotations, {**SMALL, "size": 48}),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_sample_file_validates(tmp_path, family):
    pattern, model, reader, sizes = FAMILIES[family]
    root = synthesize(family, tmp_path / family, **sizes)
    files = sorted(root.glob(pattern))
    assert len(files) == 3  # train, val and the unannotated test file
    for path in files:
        document = validate(model, json.loads(path.read_text()), path)
        assert reader(path), path
        if family == "ego4d_scod" and "unannotated" not in path.name:
            coco = json.loads(
                (root / "coco_annotations" / f"{path.stem.removeprefix('fho_scod_')}.json").read_text()
            )
            assert coco == scod_to_coco(document.clips)
