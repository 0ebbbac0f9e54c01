"""notebooks/: every notebook runs top to bottom (small size, real kernels) and is committed with
its outputs stripped."""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_the_readme_names_every_notebook_and_each_has_a_title():
    """Exactly the notebooks the README lists are there, each opens with a markdown title and
    has code to run."""
    readme = (ROOT / "README.md").read_text()
    listed = sorted(set(re.findall(r"(\d\d_\w+\.ipynb)", readme)))
    assert listed == [p.name for p in NOTEBOOKS] and len(listed) == 3
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), path.name
        assert sum(c.cell_type == "code" for c in nb.cells) >= 3, path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_outputs_are_stripped(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and (c.outputs or c.execution_count is not None)]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; clear them before committing"


@pytest.mark.heavy
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, monkeypatch, tmp_path):
    monkeypatch.setenv("FSCNN_NOTEBOOK_SIZE", "small")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    images = sum(1 for c in nb.cells if c.cell_type == "code" for o in c.outputs
                 if o.get("output_type") == "display_data" and "image/png" in o.get("data", {}))
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.get("output_type") == "error"]
    assert not errors
    assert images >= 2, f"{path.name}: expected its plots, got {images} images"
