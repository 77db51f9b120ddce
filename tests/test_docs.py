"""The documentation quotes the defaults from the one place they are defined."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from wsmanager import WSManagerConfig

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def test_configuration_table_matches_the_config_defaults() -> None:
    rows = dict(re.findall(r"^\| `(\w+)` \| `([^`]+)` \|", DOC.read_text(), re.MULTILINE))
    fields = {f.name: f.default for f in dataclasses.fields(WSManagerConfig) if f.name != "url"}
    assert set(fields) <= set(rows), set(fields) - set(rows)
    for name, default in fields.items():
        if default is dataclasses.MISSING:  # a default_factory (cache_dir): described in words
            continue
        assert rows[name] == repr(default), (name, rows[name], default)
