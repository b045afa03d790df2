"""Every notebook in notebooks/ runs top to bottom at its tiny default size."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path: Path, tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(path, as_version=4)
    env_before = os.environ.get("PDESURROGATES_NOTEBOOK_TINY")
    os.environ["PDESURROGATES_NOTEBOOK_TINY"] = "1"
    try:
        client = nbclient.NotebookClient(
            nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        )
        client.execute()
    finally:
        if env_before is None:
            os.environ.pop("PDESURROGATES_NOTEBOOK_TINY", None)
        else:
            os.environ["PDESURROGATES_NOTEBOOK_TINY"] = env_before
    errors = [
        out
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    assert not errors, f"{path.name} raised: {errors[0].get('ename')}: {errors[0].get('evalue')}"
