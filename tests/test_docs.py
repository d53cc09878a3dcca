"""The user documentation stays navigable: every relative link in README.md and docs/*.md points at
a file that exists and, with a #fragment, at a heading of that page (GitHub's anchor rule)."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"```.*?```", re.S)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped except - and _, spaces to -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {slug(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}


def links(page: Path):
    for m in LINK.finditer(FENCE.sub("", page.read_text())):
        target = m.group(1)
        if not re.match(r"[a-z]+:", target):   # http:, mailto: ... are not checked
            yield target


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page):
    bad = []
    for target in links(page):
        path, _, frag = target.partition("#")
        dest = (page.parent / path) if path else page
        if not dest.exists():
            bad.append(f"missing file {target}")
        elif frag and dest.suffix == ".md" and frag not in anchors(dest):
            bad.append(f"no heading for {target}")
    assert not bad, f"{page.relative_to(ROOT)}: " + "; ".join(bad)


def test_every_docs_page_is_in_the_index():
    index = (ROOT / "docs" / "index.md").read_text()
    missing = [p.name for p in (ROOT / "docs").glob("*.md") if p.name != "index.md" and f"({p.name}" not in index]
    assert not missing, f"docs/index.md does not link {missing}"
