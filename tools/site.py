"""Build the static docs site: ``make docs`` (into build/site/).

The notebooks are rendered as saved (their committed outputs; nothing is executed) in book order, each page with
links to the contents and to the chapters before and after it. Solution cells (tools/student.py's rule: code
cells tagged ``solution``) are hidden on the chapter's page, which links to a page of its own holding them. The
reference pages come from docs/*.md: the options reference, the model's notes, speed, development (and
docs/fidelity.md when it exists). Uses nbconvert's HTMLExporter (installed with JupyterLab) and mistune.

    python tools/site.py [OUT]        # default build/site
"""
from __future__ import annotations

import copy
import html
import re
import sys
from pathlib import Path

import mistune
import nbformat
from nbconvert import HTMLExporter

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from student import is_solution  # noqa: E402

NOTEBOOKS = ROOT / "notebooks"
DOCS = ROOT / "docs"
# Reference pages in the order the contents show them; a missing optional page is left out.
PAGES = [("options", "Options reference", True), ("model", "What the model reproduces", True),
         ("fidelity", "Kafka 4.x fidelity", False), ("speed", "Speed", True),
         ("development", "Development: layout and tests", True)]
STYLE = """
<style>
.edsim-nav { font-family: system-ui, sans-serif; font-size: 14px; padding: 8px 16px; background: #f3f5f8;
             border-bottom: 1px solid #d8dde5; display: flex; gap: 18px; flex-wrap: wrap; }
.edsim-nav a { color: #1f5fa8; text-decoration: none; }
.edsim-hidden-solution { font-family: system-ui, sans-serif; margin: 12px 0; padding: 8px 12px;
                         border-left: 4px solid #e0a800; background: #fff8e1; }
.edsim-page { max-width: 1000px; margin: 0 auto; padding: 16px; font-family: system-ui, sans-serif; }
.edsim-page table { border-collapse: collapse; } .edsim-page td, .edsim-page th { border: 1px solid #ccc;
                    padding: 3px 6px; vertical-align: top; }
</style>
"""


def title_of(nb, fallback: str) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            match = re.search(r"^#\s+(.+)$", cell.source, re.M)
            if match:
                return re.sub(r"[*_`]", "", match.group(1)).strip()
    return fallback


def nav(links: list[tuple[str, str]]) -> str:
    parts = "".join(f'<a href="{html.escape(href)}">{html.escape(text)}</a>' for href, text in links)
    return f'<nav class="edsim-nav">{parts}</nav>'


def relink(text: str) -> str:
    """Links between the project's files become links between the site's pages."""
    text = re.sub(r'href="(?:\.\./notebooks/|notebooks/)?([\w.-]+)\.ipynb"', r'href="\1.html"', text)
    text = re.sub(r'href="(?:\.\./docs/|docs/)?([\w.-]+)\.md"', r'href="\1.html"', text)
    return text


def with_nav(page: str, top: str, bottom: str) -> str:
    page = page.replace("</head>", STYLE + "</head>", 1)
    page = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + top, page, count=1)
    return page.replace("</body>", bottom + "</body>", 1)


def split_solutions(nb, solutions_page: str):
    """The chapter without its solutions (each replaced by a note linking to them) and the solutions alone."""
    chapter, solutions = copy.deepcopy(nb), copy.deepcopy(nb)
    chapter.cells, solutions.cells = [], []
    for cell in nb.cells:
        if is_solution(cell):
            n = len(solutions.cells) // 2 + 1
            chapter.cells.append(nbformat.v4.new_markdown_cell(
                f'<div class="edsim-hidden-solution">Solution {n} is hidden here, to try the exercise first: '
                f'<a href="{solutions_page}#solution-{n}">see the solution</a>.</div>'))
            solutions.cells.append(nbformat.v4.new_markdown_cell(f'<a id="solution-{n}"></a>\n## Solution {n}'))
            solutions.cells.append(copy.deepcopy(cell))
        else:
            chapter.cells.append(cell)
    return chapter, solutions


def render_markdown(text: str) -> str:
    return mistune.create_markdown(plugins=["table", "strikethrough", "url"], escape=False)(text)


def markdown_page(title: str, body_md: str, top: str) -> str:
    body = relink(render_markdown(body_md))
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)} · edsim</title>"
            f"{STYLE}</head><body>{top}<main class='edsim-page'>{body}</main></body></html>\n")


def build(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    exporter = HTMLExporter(template_name="lab")
    notebooks = sorted(NOTEBOOKS.glob("*.ipynb"))
    loaded = [(path, nbformat.read(path, as_version=4)) for path in notebooks]
    titles = [title_of(nb, path.stem) for path, nb in loaded]
    pages = [(name, title) for name, title, required in PAGES if required or (DOCS / f"{name}.md").exists()]
    written = []

    def home_links():
        return [("index.html", "edsim: contents")]

    for i, (path, nb) in enumerate(loaded):
        stem = path.stem
        links = home_links()
        if i > 0:
            links.append((f"{notebooks[i - 1].stem}.html", f"← {titles[i - 1]}"))
        if i + 1 < len(loaded):
            links.append((f"{notebooks[i + 1].stem}.html", f"{titles[i + 1]} →"))
        chapter, solutions = split_solutions(nb, f"{stem}-solutions.html")
        if solutions.cells:
            links.append((f"{stem}-solutions.html", "solutions"))
        bar = nav(links)
        body, _ = exporter.from_notebook_node(chapter, resources={"metadata": {"name": titles[i]}})
        target = out / f"{stem}.html"
        target.write_text(relink(with_nav(body, bar, bar)))
        written.append(target)
        if solutions.cells:
            solutions.cells.insert(0, nbformat.v4.new_markdown_cell(
                f"# Solutions: {titles[i]}\n\nThe answers to the exercises of "
                f'<a href="{stem}.html">{html.escape(titles[i])}</a>. Try them first.'))
            bar = nav(home_links() + [(f"{stem}.html", f"← back to {titles[i]}")])
            body, _ = exporter.from_notebook_node(solutions, resources={"metadata": {"name": f"Solutions: {titles[i]}"}})
            target = out / f"{stem}-solutions.html"
            target.write_text(relink(with_nav(body, bar, bar)))
            written.append(target)

    for name, title in pages:
        target = out / f"{name}.html"
        target.write_text(markdown_page(title, (DOCS / f"{name}.md").read_text(), nav(home_links())))
        written.append(target)

    items = "".join(f'<li><a href="{p.stem}.html">{html.escape(t)}</a></li>' for p, t in zip(notebooks, titles))
    refs = "".join(f'<li><a href="{name}.html">{html.escape(title)}</a></li>' for name, title in pages)
    index = (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>edsim</title>{STYLE}</head><body>"
             f"<main class='edsim-page'><h1>edsim: run, break and repair <em>Designing Event-Driven Systems</em>"
             f"</h1><p>The notebooks in book order, as executed (each chapter's solutions are on a page of their "
             f"own), and the reference.</p><h2>The book</h2><ol>{items}</ol><h2>Reference</h2><ul>{refs}</ul>"
             f"</main></body></html>\n")
    (out / "index.html").write_text(index)
    written.insert(0, out / "index.html")
    return written


def main(argv) -> int:
    out = Path(argv[1]) if len(argv) > 1 else ROOT / "build" / "site"
    written = build(out)
    print(f"{out}: {len(written)} pages")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
