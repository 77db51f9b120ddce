"""The examples run end to end, so they can never rot."""

from __future__ import annotations

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
def test_the_quickstart_notebook_runs_and_shows_callback_output() -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(EXAMPLES / "quickstart.ipynb", as_version=4)
    nbclient.NotebookClient(notebook, timeout=60, kernel_name="python3").execute()
    outputs = [
        "".join(o.get("text", "") for o in cell.get("outputs", []))
        for cell in notebook.cells
        if cell.cell_type == "code"
    ]
    assert "5 trades; last price" in outputs[1]
    assert outputs[2].count("bid") == 3
    assert outputs[3].count("callback got trade") == 2  # a background thread's print, not lost
    assert "closed" in outputs[-1]
