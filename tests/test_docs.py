"""The documentation holds together: every relative link and anchor resolves, and the site builds.

Links are checked in README.md, CHANGELOG.md and docs/*.md with GitHub's rules, since that is where
most people read them; the mkdocs build (when mkdocs is installed, as the test extra installs it)
checks the same pages the way the site renders them, with ``--strict`` turning a broken link into
a failure.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", REPO / "CHANGELOG.md", *sorted((REPO / "docs").glob("*.md"))]

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
COMMENT = re.compile(r"<!--.*?-->", re.S)
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.M)
INLINE_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")


def prose(text: str) -> str:
    """The text with fenced code, HTML comments and code spans removed: links there are examples."""
    return CODE_SPAN.sub("", COMMENT.sub("", FENCE.sub("", text)))


def github_anchor(heading: str) -> str:
    """GitHub's anchor for a heading: its text lowercased, punctuation but '-' and '_' dropped, spaces to '-'."""
    text = INLINE_LINK.sub(r"\1", heading).strip().lower()
    text = "".join(ch for ch in text if ch.isalnum() or ch in " -_")
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every anchor GitHub gives the headings of ``page`` (a repeated heading gets -1, -2, ...)."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for heading in HEADING.findall(COMMENT.sub("", FENCE.sub("", page.read_text()))):
        anchor = github_anchor(heading)
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        found.add(anchor if count == 0 else f"{anchor}-{count}")
    return found


def shown(path: Path) -> str:
    """``path`` relative to the repository where it lies inside it, for messages."""
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def broken_links(page: Path) -> list[str]:
    """The relative links of ``page`` whose file, or whose heading in a Markdown file, is missing."""
    broken = []
    for target in LINK.findall(prose(page.read_text())):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target}: no file {shown(resolved)}")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading with anchor #{anchor} in {shown(resolved)}")
    return broken


def test_github_anchor_follows_githubs_rules() -> None:
    assert github_anchor("Step the learned world") == "step-the-learned-world"
    assert (
        github_anchor("`min_change`: faint changes keep the real pixel")
        == "min_change-faint-changes-keep-the-real-pixel"
    )
    assert github_anchor("Physics, Push: the GPU run (2,500 steps)") == "physics-push-the-gpu-run-2500-steps"
    assert github_anchor("Trained on an [H100](gpu-training.md)") == "trained-on-an-h100"


def test_link_check_finds_a_broken_link_and_ignores_code(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other page\n\n## A section\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n[fine](other.md#a-section) [self](#page) [web](https://example.org/x)\n"
        "[gone](missing.md) [wrong anchor](other.md#no-such)\n\n"
        "`[code](nowhere.md)`\n\n```\n[fenced](nowhere.md)\n```\n<!-- [comment](nowhere.md) -->\n"
    )
    assert [entry.split(":")[0] for entry in broken_links(page)] == ["missing.md", "other.md#no-such"]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    assert page.is_file(), f"{page.relative_to(REPO)} is missing"
    broken = broken_links(page)
    assert not broken, f"{page.relative_to(REPO)} has broken links:\n" + "\n".join(broken)


def test_mkdocs_nav_lists_every_docs_page_and_only_those() -> None:
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    assert config["docs_dir"] == "docs"

    def pages(nav: object) -> list[str]:
        if isinstance(nav, str):
            return [nav]
        if isinstance(nav, list):
            return [page for entry in nav for page in pages(entry)]
        if isinstance(nav, dict):
            return [page for entry in nav.values() for page in pages(entry)]
        return []

    listed = pages(config["nav"])
    on_disk = sorted(path.name for path in (REPO / "docs").glob("*.md"))
    assert sorted(listed) == on_disk, f"mkdocs.yml nav lists {sorted(listed)}; docs/ holds {on_disk}"


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason='needs mkdocs: pip install -e ".[docs]"')
def test_mkdocs_site_builds_strict(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(REPO / "mkdocs.yml"),
            "--site-dir",
            str(tmp_path / "site"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    assert (tmp_path / "site" / "index.html").is_file()
