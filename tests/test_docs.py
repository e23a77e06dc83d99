"""The front page stays short and every relative link in the docs leads somewhere.

README.md is the project's front page (at most 200 lines); the details live in docs/*.md. A
relative link, `[text](path)` or `![alt](path)` with an optional `#anchor`, must name a file
that exists and, for an anchor, a heading of that file under GitHub's slug rules. Links inside
code (fenced blocks and inline spans) are text, not links, and web or mail links are not
checked. Standard library only, so it runs in well under a second.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FRONT_PAGE_LINES = 200
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_INLINE_CODE = re.compile(r"(`+)(?:(?!\1)(?!\n[ \t]*\n).)+?\1", re.DOTALL)  # not across paragraphs
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_SKIPPED_SCHEMES = ("http:", "https:", "mailto:")


def _outside_fences(text: str) -> str:
    """The text with fenced code blocks blanked (line count kept)."""
    kept: list[str] = []
    fence = ""
    for line in text.splitlines():
        match = _FENCE.match(line)
        if not fence:
            if match:
                fence = match.group(1)
            kept.append("" if fence else line)
            continue
        closing = match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence)
        if closing and not line.strip().strip(fence[0]):
            fence = ""
        kept.append("")
    return "\n".join(kept)


def _prose(text: str) -> str:
    """The text outside fenced code blocks, with inline code spans blanked (line count kept)."""
    return _INLINE_CODE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), _outside_fences(text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation other than '-' and '_' removed,
    spaces turned into '-'."""
    text = re.sub(r"`([^`]*)`", r"\1", heading).strip().lower()
    text = "".join(c for c in text if c.isalnum() or c in "-_ ")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a markdown file; repeated headings get -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for line in _outside_fences(path.read_text(encoding="utf-8")).splitlines():
        match = _HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def relative_links(text: str) -> list[str]:
    """The targets of the markdown links and images in `text` that are not web or mail links."""
    targets = [match.group(1) for match in _LINK.finditer(_prose(text))]
    return [t for t in targets if t and not t.lower().startswith(_SKIPPED_SCHEMES)]


def broken_links(page: Path) -> list[str]:
    """Each relative link of `page` whose file or heading anchor does not exist, with why."""
    problems = []
    for target in relative_links(page.read_text(encoding="utf-8")):
        path_part, _, anchor = target.partition("#")
        destination = (page.parent / unquote(path_part)).resolve() if path_part else page
        if not destination.exists():
            problems.append(f"{target}: no file {os.path.relpath(destination, ROOT)}")
        elif anchor and (
            destination.suffix.lower() != ".md" or unquote(anchor) not in anchors(destination)
        ):
            problems.append(f"{target}: no heading #{anchor} in {destination.name}")
    return problems


def test_readme_fits_on_a_front_page() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= FRONT_PAGE_LINES, (
        f"README.md has {len(lines)} lines; move details into docs/ (limit {FRONT_PAGE_LINES})"
    )


def test_docs_pages_exist_to_check() -> None:
    assert len(PAGES) > 1, "no docs/*.md pages found"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_in_docs_resolve(page: Path) -> None:
    assert broken_links(page) == [], f"broken links in {page.relative_to(ROOT)}"


def test_heading_slugs_follow_github_rules() -> None:
    assert slug("Late average (the default)") == "late-average-the-default"
    assert slug("The per-frame log (`--log`)") == "the-per-frame-log---log"
    assert slug("Live, through the real transport") == "live-through-the-real-transport"
    assert slug("snake_case stays") == "snake_case-stays"


def test_links_in_code_are_not_checked_and_web_links_are_skipped() -> None:
    text = (
        "See [guide](docs/guide.md#delay-policy) and ![plot](docs/plot.png).\n"
        "A [split\nlink](a.md) spans lines; [web](https://example.com) and [mail](mailto:x@y).\n"
        "`[not a link](nowhere.md)`\n"
        "```\n[also not](nowhere.md)\n# not a heading\n```\n"
    )
    assert relative_links(text) == ["docs/guide.md#delay-policy", "docs/plot.png", "a.md"]


def test_a_missing_file_or_heading_is_reported(tmp_path: Path) -> None:
    (tmp_path / "target.md").write_text("# Title\n\n## A heading\n\n```\n## Not one\n```\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](target.md#a-heading) [self](#own) [gone](missing.md) "
        "[bad](target.md#not-one) [plain](target.md)\n\n## Own\n"
    )
    problems = broken_links(page)
    assert [p.split(":")[0] for p in problems] == ["missing.md", "target.md#not-one"]
