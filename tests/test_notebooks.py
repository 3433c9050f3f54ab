"""Execute every walkthrough notebook in quick mode (``SGDBOUND_QUICK=1``) with nbclient."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NAMES = ["interpolation.ipynb", "noisy_bcps_and_lambda.ipynb", "notebook_replica.ipynb", "bounds_explorer.ipynb"]


def test_generator_writes_every_notebook(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_notebooks", NOTEBOOKS / "make_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    paths = module.write(tmp_path)
    assert sorted(p.name for p in paths) == sorted(NAMES)
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert any("SGDBOUND_QUICK" in cell.source for cell in nb.cells)
        # The committed notebook matches what the generator writes.
        committed = nbformat.read(NOTEBOOKS / path.name, as_version=4)
        assert [c.source for c in committed.cells] == [c.source for c in nb.cells], path.name


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_executes_in_quick_mode(name, monkeypatch):
    monkeypatch.setenv("SGDBOUND_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()  # the kernel inherits os.environ
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any(o.output_type == "stream" and "quick mode" in o.text for o in outputs)
    assert any(o.output_type == "display_data" and "image/png" in o.data for o in outputs), name
