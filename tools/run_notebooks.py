"""Execute the example notebooks headless with the `gim` kernel; write executed .ipynb and .html.

Exit status 0 only if every cell ran without error and every cell tagged `draws` produced a
picture or HTML. Usage: run_notebooks.py OUT_DIR [NOTEBOOK ...]
"""
import pathlib
import sys

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbconvert import HTMLExporter

RICH = ("image/svg+xml", "image/png", "text/html")


def drew(cell):
    for o in cell.get("outputs", []):
        if o.get("output_type") in ("display_data", "execute_result") and any(k in o.get("data", {}) for k in RICH):
            return True
    return False


def strip_volatile(nb):
    # Execution timestamps live in cell metadata; drop them so re-runs give identical files.
    for c in nb.cells:
        c.metadata.pop("execution", None)
    nb.metadata.pop("widgets", None)


def main():
    out = pathlib.Path(sys.argv[1]).resolve()
    out.mkdir(parents=True, exist_ok=True)
    here = pathlib.Path(__file__).resolve().parent.parent / "notebooks"
    books = [pathlib.Path(p).resolve() for p in sys.argv[2:]] or sorted(here.glob("*.ipynb"))
    failures = []
    for path in books:
        nb = nbformat.read(path, as_version=4)
        client = NotebookClient(nb, kernel_name="gim", timeout=900, resources={"metadata": {"path": str(path.parent)}})
        try:
            client.execute()
        except CellExecutionError as e:
            failures.append(f"{path.name}: {str(e).splitlines()[0] if str(e) else 'cell error'}")
        for i, c in enumerate(nb.cells):
            if c.cell_type == "code" and "draws" in c.metadata.get("tags", []) and not drew(c):
                failures.append(f"{path.name} cell {i}: meant to draw but produced no image/html")
        strip_volatile(nb)
        nbformat.write(nb, out / path.name)
        body, _ = HTMLExporter().from_notebook_node(nb)
        (out / path.with_suffix(".html").name).write_text(body)
        print(f"executed {path.name} -> {out / path.name} and .html")
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print(f"all {len(books)} notebooks ran; outputs in {out}")


if __name__ == "__main__":
    main()
