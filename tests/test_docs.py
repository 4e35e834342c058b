"""The documentation: README.md fits a screen, docs/ builds into a site with `mkdocs build
--strict`, and every relative link of README.md and docs/ works on GitHub (file and #anchor)."""

from __future__ import annotations

import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
README_MAX_LINES = 200
BUILD_TIMEOUT_S = 300

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")
INLINE_CODE = re.compile(r"(`+).+?\1", re.S)
# [text](target) and ![alt](target), the text possibly over several lines; an optional title.
MD_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_LINK = re.compile(r"<(?:img|a|source)\b[^>]*?\s(?:src|href)\s*=\s*\"([^\"]+)\"", re.I)
HTML_ANCHOR = re.compile(r"<a\b[^>]*?\s(?:id|name)\s*=\s*\"([^\"]+)\"", re.I)


def doc_files() -> list[Path]:
    return [README, *sorted((REPO / "docs").rglob("*.md"))]


def prose(text: str) -> str:
    """The Markdown without fenced code blocks and inline code, where links are not links."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        lines.append("" if fenced else line)
    return INLINE_CODE.sub("", "\n".join(lines))


def github_slug(heading: str) -> str:
    """GitHub's id for a heading: lowercase, punctuation dropped, each space a '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every #anchor GitHub gives a Markdown file: its headings (repeats get -1, -2, …) and <a id>."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    text = path.read_text(encoding="utf-8")
    fenced = False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced and (match := HEADING.match(line)):
            slug = github_slug(match.group(1))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            found.add(slug if count == 0 else f"{slug}-{count}")
    found.update(HTML_ANCHOR.findall(prose(text)))
    return found


def broken_links(path: Path) -> list[str]:
    """The relative links of a Markdown file whose target file or #anchor does not exist."""
    text = prose(path.read_text(encoding="utf-8"))
    problems = []
    for target in MD_LINK.findall(text) + HTML_LINK.findall(text):
        parts = urlsplit(target)
        if parts.scheme or parts.netloc or target.startswith("/"):
            continue  # external, or absolute (which a GitHub blob view does not resolve either)
        where = (path.parent / unquote(parts.path)).resolve() if parts.path else path
        if not where.exists():
            problems.append(f"{path.name}: {target}: no such file")
        elif parts.fragment and where.suffix == ".md" and parts.fragment not in anchors(where):
            problems.append(f"{path.name}: {target}: no heading #{parts.fragment} in {where.name}")
    return problems


def test_readme_fits_a_screen() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines (at most {README_MAX_LINES}): move sections into docs/"
    )


def test_every_relative_link_resolves() -> None:
    files = doc_files()
    assert len(files) > 10, "docs/ pages missing"
    problems = [problem for path in files for problem in broken_links(path)]
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_the_link_check_sees_a_broken_file_and_anchor(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# Title\n\n## Data sources (`data.source`)\n\n## Notes\n\n## Notes\n")
    page = tmp_path / "b.md"
    page.write_text(
        "[ok](a.md#data-sources-datasource) [ok](a.md#notes-1) [over two\nlines](a.md#title)\n"
        '![gone](missing.png) [bad anchor](a.md#data-sources) <img src="nothere.png">\n'
        "`[code](ignored.md)`\n\n```\n[fenced](ignored.md)\n```\n[web](https://example.org/x.md)\n"
    )
    assert broken_links(page) == [
        "b.md: missing.png: no such file",
        "b.md: a.md#data-sources: no heading #data-sources in a.md",
        "b.md: nothere.png: no such file",
    ]


def test_github_slugs() -> None:
    assert github_slug("Parameter sets (`sets:`)") == "parameter-sets-sets"
    assert github_slug("From Python, or as a model server") == "from-python-or-as-a-model-server"
    assert github_slug("Tests & layout") == "tests--layout"


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.sources += [value for name, value in attrs if name == "src" and value]


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    assert (site / "index.html").is_file()
    # Every picture of every page is in the site, raw-HTML <img> tags included (MkDocs does
    # not check those): the figures under reports/ travel with the pages.
    missing = []
    for page in site.rglob("*.html"):
        parser = _Images()
        parser.feed(page.read_text(encoding="utf-8"))
        for source in parser.sources:
            parts = urlsplit(source)
            if not (parts.scheme or parts.netloc or source.startswith("data:")):
                if not (page.parent / unquote(parts.path)).resolve().is_file():
                    missing.append(f"{page.relative_to(site)}: {source}")
    assert not missing, "images missing from the site:\n" + "\n".join(missing)
    assert (site / "reports" / "frontier.png").is_file()
