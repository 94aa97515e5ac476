"""make docs: the executed notebooks as saved, in book order with navigation, solutions hidden on the chapter
pages and shown on pages of their own, and the reference pages; every link between pages leads somewhere."""
import html
import importlib.util
import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
ORDER = ["00-start-here", "03-what-kafka-is", "04a-log-and-partitions", "04b-ordering", "04c-durability",
         "04d-consumer-groups", "04e-compaction-and-retention", "06-stateful-functions",
         "12-duplicates-and-exactly-once"]


def load_tool(name):
    sys.path.insert(0, str(ROOT / "tools"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    load_tool("site").build(out)
    return out


def links(page: Path) -> list[str]:
    return [html.unescape(h) for h in re.findall(r'href="([^"]*)"', page.read_text())]


def local(href: str) -> bool:
    return not re.match(r"^(#|[a-z]+:|//)", href) and href != ""


def test_every_page_exists_and_the_index_lists_them_in_book_order(site):
    index = links(site / "index.html")
    chapters = [h for h in index if h.removesuffix(".html") in ORDER]
    assert chapters == [f"{name}.html" for name in ORDER]
    for name in ORDER:
        assert (site / f"{name}.html").exists() and (site / f"{name}-solutions.html").exists()
    for name in ("options", "speed", "model", "development"):
        assert f"{name}.html" in index and (site / f"{name}.html").exists()


def test_chapters_link_to_their_neighbours_and_their_solutions(site):
    for i, name in enumerate(ORDER):
        hrefs = links(site / f"{name}.html")
        assert "index.html" in hrefs and f"{name}-solutions.html" in hrefs
        if i > 0:
            assert f"{ORDER[i - 1]}.html" in hrefs
        if i + 1 < len(ORDER):
            assert f"{ORDER[i + 1]}.html" in hrefs
        assert f"{name}.html" in links(site / f"{name}-solutions.html")


def test_every_local_link_leads_to_a_page(site):
    for page in site.glob("*.html"):
        for href in filter(local, links(page)):
            target = href.split("#")[0]
            assert (site / target).exists(), f"{page.name} links to {href}, which is not in the site"
            assert not target.endswith((".ipynb", ".md")), f"{page.name}: {href} was not turned into a page"


def test_solutions_are_hidden_on_the_chapter_and_shown_on_their_own_page(site):
    student = load_tool("student")
    for name in ORDER:
        nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
        solutions = [c for c in nb.cells if student.is_solution(c)]
        assert solutions, name
        chapter = html.unescape(re.sub(r"<[^>]+>", "", (site / f"{name}.html").read_text()))
        answers = html.unescape(re.sub(r"<[^>]+>", "", (site / f"{name}-solutions.html").read_text()))
        for cell in solutions:
            line = max((ln.strip() for ln in cell.source.splitlines() if not ln.strip().startswith("#")), key=len)
            assert line not in chapter, (name, line)
            assert line in answers, (name, line)


def test_pages_show_the_saved_outputs(site):
    """Rendered as saved, never re-executed: a saved text output of the first notebook is on its page."""
    nb = nbformat.read(ROOT / "notebooks" / "00-start-here.ipynb", as_version=4)
    texts = [o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
             if o.output_type == "stream" and o.get("text", "").strip()]
    assert texts
    page = html.unescape((site / "00-start-here.html").read_text())
    assert texts[0].strip().splitlines()[0] in page


def test_the_options_reference_is_a_page(site):
    page = (site / "options.html").read_text()
    assert "<table>" in page and "linger.ms" in page
