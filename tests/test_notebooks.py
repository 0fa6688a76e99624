"""The analyst notebooks: each one runs top to bottom on freshly built demo output and draws its figures;
the committed files carry no outputs, execution counts or absolute paths."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest
from ipykernel.kernelspec import write_kernel_spec
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from pipelines.cli import main

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
SAMPLE = ROOT / "samples" / "vcc-demo" / "notifications-*.jsonl"
KERNEL = "vccflow-notebook-test"
#: Absolute paths of any usual shape: POSIX roots, home shortcuts, Windows drives, file URLs.
ABSOLUTE_PATH = re.compile(
    r"(?<![\w.])/(home|Users|tmp|work|root|var|mnt|opt|private|srv|data)/|~/|\b[A-Za-z]:\\\\|file://"
)


def test_the_notebooks_exist():
    assert {
        "channel_analytics.ipynb",
        "agent_analytics.ipynb",
        "contact_analytics.ipynb",
        "interval_dashboard.ipynb",
    } <= {p.name for p in NOTEBOOKS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_is_clean(path):
    text = path.read_text(encoding="utf-8")
    nb = nbformat.reads(text, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: strip the outputs"
        assert "execution" not in cell.metadata, f"{path.name}: stale execution timings"
    assert str(ROOT) not in text and not ABSOLUTE_PATH.search(text), f"{path.name}: absolute path"
    first = nb.cells[0]
    assert first.cell_type == "code" and 'OUTPUT = os.environ.get("VCCFLOW_OUTPUT", "../demo-out")' in first.source
    assert json.loads(text)["metadata"]["kernelspec"]["name"] == "python3"


@pytest.fixture(scope="module")
def demo_output(tmp_path_factory):
    """Fresh output of the bundled sample, made the way ``make demo`` makes it (in-process)."""
    out = tmp_path_factory.mktemp("notebooks") / "demo-out"
    assert main(["batch", "--input", str(SAMPLE), "--output", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def kernel_specs(tmp_path_factory):
    """A kernel spec for this very interpreter, so the notebooks run in the project's venv whatever
    other ``python3`` kernels the machine has registered."""
    kernels = tmp_path_factory.mktemp("kernels")
    write_kernel_spec(kernels / KERNEL, overrides={"display_name": "vccflow notebook test"})
    return KernelSpecManager(kernel_dirs=[str(kernels)])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom_and_draws(path, demo_output, kernel_specs, monkeypatch):
    monkeypatch.setenv("VCCFLOW_OUTPUT", str(demo_output))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend turns figures into PNGs
    nb = nbformat.read(path, as_version=4)
    kernel = KernelManager(kernel_name=KERNEL, kernel_spec_manager=kernel_specs)
    # raises CellExecutionError, with the cell and its traceback, on the first failing cell
    NotebookClient(nb, km=kernel, timeout=120, resources={"metadata": {"path": str(NOTEBOOK_DIR)}}).execute()

    def pngs(cell):
        return sum("image/png" in out.get("data", {}) for out in cell.get("outputs", []))

    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert sum(pngs(cell) for cell in code) >= 1
    for cell in code:
        if "plt.show()" in cell.source:
            assert pngs(cell) == 1, f"no figure from:\n{cell.source}"
        assert not any(out.output_type == "error" for out in cell.outputs)
