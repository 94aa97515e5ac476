"""Execute a notebook in place with nbclient (kernel python3), keeping no timing metadata: ``make notebooks``."""
import sys

import nbformat
from nbclient import NotebookClient

for path in sys.argv[1:]:
    nb = nbformat.read(path, as_version=4)
    _changes, nb = nbformat.validator.normalize(nb)
    nb = nbformat.from_dict(nb)
    NotebookClient(nb, kernel_name="python3", timeout=600, record_timing=False,
                   resources={"metadata": {"path": "notebooks"}}).execute()
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    nbformat.write(nb, path)
