"""visiontasks.configs: a config file read as fit reads it (jsonargparse's loader), errors in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from visiontasks.configs import load_value, parser_mode, read_config
from visiontasks.errors import InvalidInputError, MissingFileError


def test_read_config_reads_as_jsonargparse(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  init_args:\n    lr: 1e-3\n    sizes: [1, 2]\n")
    cfg = read_config(path)
    assert cfg["data"]["init_args"] == {"lr": 0.001, "sizes": [1, 2]}  # 1e-3 a float, as fit reads it
    assert parser_mode() in ("yaml", "omegaconf")
    assert load_value("14", "--x") == 14 and load_value("[1, 2]", "--x") == [1, 2]


def test_read_config_mistakes_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match="none.yaml does not exist"):
        read_config(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [1, 2\n")
    with pytest.raises(InvalidInputError, match="bad.yaml: not valid"):
        read_config(bad)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(InvalidInputError, match="list.yaml: a config is a mapping"):
        read_config(listed)
