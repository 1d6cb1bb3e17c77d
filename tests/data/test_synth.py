"""The synth package's helpers that data modules share (:mod:`vidlit.data.synth`)."""

from __future__ import annotations

import logging

import pytest

from vidlit.data.synth import write_sample_if_missing


def _write_marker(root):
    root.mkdir(parents=True)
    (root / "train.csv").write_text("path,label\n")


def test_a_missing_local_root_gets_the_sample_with_a_warning_and_a_line_on_stdout(tmp_path, caplog, capsys):
    root = tmp_path / "data" / "sample"
    log = logging.getLogger("vidlit.data.some_family")
    with caplog.at_level(logging.WARNING):
        write_sample_if_missing(
            root, _write_marker, "Some sample", marker="train.csv", task="some", log=log, announce=True
        )
    assert (root / "train.csv").is_file()
    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        ("vidlit.data.some_family", f"{root} does not exist: writing the SYNTHETIC Some sample there")
    ]
    assert capsys.readouterr().out == f"writing the synthetic Some sample dataset to {root}\n"


def test_an_existing_root_is_left_alone_and_checked_for_its_marker(tmp_path, caplog):
    written = []
    (tmp_path / "train.csv").write_text("path,label\n")
    with caplog.at_level(logging.WARNING):
        write_sample_if_missing(tmp_path, written.append, "Some sample", marker="train.csv", task="some")
    assert written == [] and caplog.records == []
    (tmp_path / "train.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"incomplete some sample data \(train\.csv is missing\)"):
        write_sample_if_missing(tmp_path, written.append, "Some sample", marker="train.csv", task="some")
    # without a marker, an existing folder is not checked (the Ego4D and raw-video readers)
    write_sample_if_missing(tmp_path, written.append, "Some sample")
    assert written == []


def test_a_url_root_is_never_written_and_must_hold_the_sample(tmp_path):
    written, url = [], "memory://nowhere"
    with pytest.raises(FileNotFoundError, match=r"^memory://nowhere: no train\.csv: synthetic sample"):
        write_sample_if_missing(url, written.append, "Some sample", marker="train.csv", task="some")
    write_sample_if_missing(url, written.append, "Some sample")
    assert written == []
