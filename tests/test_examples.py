"""The examples run end to end, so they can never rot."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_the_quickstart_script_runs() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "callback saw 3 trades" in result.stdout
    assert "collected 2 klines, interval 1m" in result.stdout


@pytest.mark.timeout(120)
def test_the_quickstart_notebook_runs_and_keeps_its_tables_and_figures(tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(EXAMPLES / "quickstart.ipynb", as_version=4)
    nbclient.NotebookClient(notebook, timeout=60, kernel_name="python3").execute()
    executed = tmp_path / "quickstart.ipynb"
    nbformat.write(notebook, executed)
    cells = {
        tag: cell
        for cell in nbformat.read(executed, as_version=4).cells
        for tag in cell.metadata.get("tags", [])
    }

    def text(tag: str) -> str:
        return "".join(o.get("text", "") for o in cells[tag].outputs)

    def data(tag: str, kind: str) -> list[str]:
        return [o.data[kind] for o in cells[tag].outputs if kind in o.get("data", {})]

    assert "5 trades; last price" in text("collect")
    assert text("iterate").count("bid") == 3
    assert text("callback").count("callback got trade") == 2  # a background thread's print
    assert "closed" in text("close")
    (table,) = data("manager-table", "text/html")
    assert 'class="wsmanager-streams"' in table
    assert "<code>btcusdt@trade</code>" in table
    assert "<code>btcusdt@depth@100ms</code>" in table
    (book,) = data("book-table", "text/html")
    assert "BTCUSDT" in book and "not synced" not in book  # the local book, synced
    assert "book resyncs:" in text("metrics")
    assert "closed candles," in text("frame")
    assert "candles, the last one live" in text("candles-live")
    figures = {tag: data(tag, "image/png") for tag in ("prices", "depth", "candles")}
    for tag, pngs in figures.items():
        assert len(pngs) == 1, tag
        assert base64.b64decode(pngs[0]).startswith(b"\x89PNG\r\n\x1a\n"), tag
    # WSMANAGER_NOTEBOOK_IMAGES=docs/img refreshes the figures the docs show.
    if target := os.environ.get("WSMANAGER_NOTEBOOK_IMAGES"):
        for tag, pngs in figures.items():
            (Path(target) / f"notebook-{tag}.png").write_bytes(base64.b64decode(pngs[0]))
