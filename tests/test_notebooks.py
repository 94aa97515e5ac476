"""The chapter notebooks keep the template of NOTEBOOKS.md, and their learner copies keep running.

nbval (run by ``make test``) re-executes every notebook and compares its outputs; these checks catch what nbval
cannot see: a cell saved without executing (never compared), a widget cell without the ignore marker, a notebook
without an exercise, a learner copy that still shows the solution.
"""
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CHAPTERS = [nb for nb in NOTEBOOKS if not nb.name.startswith("00-")]
ORDER = ["00-start-here", "03-what-kafka-is", "04a-log-and-partitions", "04b-ordering", "04c-durability",
         "04d-consumer-groups", "04e-compaction-and-retention", "06-stateful-functions",
         "12-duplicates-and-exactly-once"]
# Notebooks whose panel runs services defined in the notebook itself: the benchmark cannot rebuild those classes
OWN_SERVICES = ["06-stateful-functions"]


def cells(path):
    return json.loads(path.read_text())["cells"]


def source(cell):
    return "".join(cell["source"])


def test_the_chapter_notebooks_exist_in_book_order():
    assert [nb.stem for nb in NOTEBOOKS] == ORDER


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_code_cell_was_executed_and_saved(path):
    for cell in cells(path):
        if cell["cell_type"] == "code" and source(cell).strip():
            assert cell["execution_count"] is not None, source(cell)[:80]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_widget_and_picture_cells_are_ignored_by_nbval_and_nothing_else_is(path):
    for cell in cells(path):
        text = source(cell)
        if cell["cell_type"] != "code":
            continue
        assert "NBVAL" not in text, text[:80]              # a cell tag, not a comment the learner reads
        ignored = "nbval-ignore-output" in cell.get("metadata", {}).get("tags", [])
        if "ExperimentPanel(" in text:
            assert ignored, text[:80]


def test_every_panel_scenario_is_saved_for_the_benchmark():
    """The benchmark times each notebook's own panel scenario, read from the ``panel.scenario`` cell after the
    panel (its saved output is what nbval compares on every run): one per notebook, each a real Scenario."""
    from edsim import Scenario, bench

    panels = bench.chapter_panels(ROOT / "notebooks")
    assert list(panels) == [name for name in ORDER if name not in OWN_SERVICES]
    assert all(isinstance(s, Scenario) for s in panels.values())
    for name in OWN_SERVICES:
        saved = [c for c in cells(ROOT / "notebooks" / f"{name}.ipynb") if c["cell_type"] == "code"
                 and source(c).splitlines()[-1:] == [bench.PANEL_CELL]]
        assert "services=" in "".join(saved[0]["outputs"][0]["data"]["text/plain"])
    for path in NOTEBOOKS:
        code = [source(c) for c in cells(path) if c["cell_type"] == "code"]
        panel = next(i for i, text in enumerate(code) if "ExperimentPanel(" in text)
        assert code[panel + 1].splitlines()[-1] == bench.PANEL_CELL, path.stem


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_a_chapter_follows_the_template(path):
    text = "\n".join(source(c) for c in cells(path))
    markdown = "\n".join(source(c) for c in cells(path) if c["cell_type"] == "markdown").lower()
    assert "learning goals" in markdown
    assert "what the book says" in markdown
    assert "ExperimentPanel(" in text
    assert "break it" in markdown
    assert "exercise" in markdown
    assert "summary" in markdown and "source" in markdown
    assert "SEED" in text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_an_exercise_has_a_solution_and_a_check(path):
    code = [c for c in cells(path) if c["cell_type"] == "code"]
    solutions = [c for c in code if "solution" in c.get("metadata", {}).get("tags", [])]
    assert solutions, "no cell tagged 'solution'"
    assert any("✅" in source(c) and "❌" in source(c) for c in code), "no check cell printing ✅ / ❌"


def test_learner_copies_blank_the_solutions(tmp_path):
    import sys
    sys.path.insert(0, str(ROOT / "tools"))
    from student import main
    import os
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        main(["student", str(tmp_path)])
    finally:
        os.chdir(cwd)
    for original in NOTEBOOKS:
        copy = cells(tmp_path / original.name)
        kept = [source(c) for c in cells(original) if "solution" in c.get("metadata", {}).get("tags", [])]
        blanked = [source(c) for c in copy if "solution" in c.get("metadata", {}).get("tags", [])]
        assert len(blanked) == len(kept) >= 1
        assert all(b.startswith("# Your solution here") for b in blanked)
        assert all(not c.get("outputs") for c in copy if c["cell_type"] == "code")
