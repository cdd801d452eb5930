"""The tutorial notebooks run top to bottom (small mode: KPRUNE_TUTORIAL_SMALL=1)
and show what they promise (tables, a plot)."""

import glob
import os
import re

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TUTORIALS = sorted(glob.glob(os.path.join(REPO, "tutorials", "*.ipynb")))


def test_the_six_tutorials_exist():
    names = [os.path.basename(p) for p in TUTORIALS]
    assert names == ["01_lenet5_iap_microcontroller.ipynb", "02_aiap_resnet_macs_target.ipynb",
                     "03_memory_aware_arena_budget.ipynb", "04_your_own_model.ipynb",
                     "05_qat_int8_microcontroller.ipynb",
                     "06_keras_hub_backbone_litert.ipynb"]


@pytest.mark.parametrize("path", TUTORIALS, ids=os.path.basename)
def test_tutorial_runs(path, tmp_path, monkeypatch):
    monkeypatch.setenv("KPRUNE_TUTORIAL_SMALL", "1")
    monkeypatch.setenv("KPRUNE_TUTORIAL_OUT", str(tmp_path))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    monkeypatch.setenv("PYTHONPATH", REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "mode: SMALL" in text
    kinds = {k for o in outputs for k in o.get("data", {})}
    assert "image/png" in kinds, "a plot is shown"
    assert "text/markdown" in kinds, "a table is shown"
    assert any(name.endswith(".png") for name in os.listdir(tmp_path))
    if os.path.basename(path).startswith("01_"):
        # Its last section prunes on JAX in a child process and loads the
        # result back on TensorFlow with the same outputs.
        assert "pruned on jax" in text
        diff = float(re.search(r"largest output difference (\S+)", text).group(1))
        assert diff < 1e-4
