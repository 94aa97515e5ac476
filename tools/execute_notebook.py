"""Execute a notebook in place with nbclient (kernel python3), without timing metadata."""
import sys, nbformat
from nbclient import NotebookClient
path = sys.argv[1]
nb = nbformat.read(path, as_version=4)
changes, nb = nbformat.validator.normalize(nb)
nb = nbformat.from_dict(nb)
NotebookClient(nb, kernel_name="python3", timeout=600, record_timing=False,
               resources={"metadata": {"path": "notebooks"}}).execute()
for cell in nb.cells:
    cell.metadata.pop("execution", None)
nbformat.write(nb, path)
