"""Write learner copies of the notebooks: ``make student`` (into build/student/).

A cell tagged ``solution`` keeps only its comment lines and a placeholder, so the learner writes the answer; every
output is cleared, so the learner runs the notebook themselves. CI runs the copies with ``--nbval-lax``: they must
still execute from top to bottom (the check cells then print the hint instead of the tick).
"""
import sys
from pathlib import Path

import nbformat

PLACEHOLDER = "# Your solution here: set the answer variables above, then run the check below."


def is_solution(cell) -> bool:
    """A solution cell: a code cell tagged ``solution`` (tools/site.py hides the same cells)."""
    return cell.cell_type == "code" and "solution" in cell.metadata.get("tags", [])


def student_copy(source: Path, target: Path) -> int:
    nb = nbformat.read(source, as_version=4)
    blanked = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if is_solution(cell):
            cell.source = PLACEHOLDER
            blanked += 1
        cell.outputs = []
        cell.execution_count = None
    nb.metadata.pop("widgets", None)            # saved widget state belongs to the executed copy
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, target)
    return blanked


def main(argv):
    out = Path(argv[1]) if len(argv) > 1 else Path("build/student")
    for source in sorted(Path("notebooks").glob("*.ipynb")):
        n = student_copy(source, out / source.name)
        print(f"{out / source.name}: {n} solution cell(s) blanked")
    sanitize = Path("notebooks/sanitize.cfg")
    if sanitize.exists():
        (out / "sanitize.cfg").write_text(sanitize.read_text())


if __name__ == "__main__":
    main(sys.argv)
