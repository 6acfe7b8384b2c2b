"""Execute tests/kernel/smoke.ipynb end to end with nbclient."""
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from conftest import KERNEL_NAME, TIMEOUT

HERE = Path(__file__).parent


def test_smoke_notebook_runs():
    nb = nbformat.read(HERE / "smoke.ipynb", as_version=4)
    NotebookClient(nb, kernel_name=KERNEL_NAME, timeout=TIMEOUT, startup_timeout=TIMEOUT).execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    help_out, rust_out, mixed_out, block_out = (c.outputs for c in code)
    assert help_out[0].output_type == "execute_result" and "help" in help_out[0].data["text/plain"]
    assert rust_out[0].output_type == "stream" and rust_out[0].text == "hello from Rust\n"
    # Mixed cell: the magic's bundle is displayed, the Rust value is the cell's result.
    assert [o.output_type for o in mixed_out] == ["display_data", "execute_result"]
    assert "text/html" in mixed_out[0].data
    assert mixed_out[1].data["text/plain"] == "15"
    assert [o.output_type for o in block_out] == ["display_data", "execute_result"]
    assert "text/html" in block_out[1].data
