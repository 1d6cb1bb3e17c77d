"""``vidlit data check`` on a list of the real files and one corrupt copy of a real file."""

from __future__ import annotations

import pytest
from real_media import NAMES

from vidlit.cli import main


@pytest.mark.parametrize("full", [False, True])
def test_check_names_the_corrupt_file_and_passes_the_real_ones(real_videos, tmp_path, capsys, full):
    # bikes.mp4 cut to its first 60 %: its moov index (at the end) is gone, the download of a real
    # file that stopped short
    data = real_videos["bikes"].read_bytes()
    corrupt = tmp_path / "bikes_cut.mp4"
    corrupt.write_bytes(data[: len(data) * 3 // 5])
    listing = tmp_path / "list.csv"
    listing.write_text("path\n" + "".join(f"{real_videos[n]}\n" for n in NAMES) + f"{corrupt.name}\n")
    args = ["data", "check", str(listing)] + (["--full", "--workers", "2"] if full else [])
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 1
    out = capsys.readouterr().out
    mode = "every frame decoded" if full else "opened, first and last frame decoded"
    assert f"list.csv: 4 readable, 1 unreadable ({mode})" in out, out
    assert f"{corrupt} (line 6): " in out, out
    assert not any(str(real_videos[n]) in out for n in NAMES), out  # the real files are not named
