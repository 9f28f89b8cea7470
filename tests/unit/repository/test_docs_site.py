"""The README as a landing page and the documentation site's wiring, checked without building the site (`make lint`
runs `mkdocs build --strict`, which checks every link and anchor)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]
README = (REPO / "README.md").read_text()
COURSE_ROWS = ["1.1", "1.2", "1.3", "1.4", "1.5", "1.6", "1.7", "2.1", "2.2", "2.3", "2.4"]


def test_readme_is_a_short_landing_page() -> None:
    assert len(README.splitlines()) < 250
    for heading in ("## Quickstart", "## Architecture", "## Features", "## Course requirements", "## Кратко по-русски"):
        assert heading in README, heading
    quickstart = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    assert "make demo" in quickstart and "make test" in quickstart and "curl " in quickstart
    assert "```mermaid" in README


def test_readme_maps_every_course_requirement_to_a_file_or_command() -> None:
    course = README.split("## Course requirements", 1)[1].split("\n## ", 1)[0]
    for row in COURSE_ROWS:
        (line,) = [line for line in course.splitlines() if line.startswith(f"| {row} |")]
        where = line.split("|")[3]
        assert "`" in where, f"{row}: names no file or command"


def test_readme_links_to_docs_pages_that_exist() -> None:
    links = re.findall(r"\]\((docs/[^)#]+)", README)
    assert len(links) >= 10
    for link in links:
        assert (REPO / link).is_file(), link


def mkdocs_config() -> dict[str, object]:
    class Loader(yaml.SafeLoader):
        pass

    # mkdocs.yml names a Python function (`!!python/name:`) for the mermaid fence; only its presence matters here.
    Loader.add_multi_constructor("tag:yaml.org,2002:python/name:", lambda loader, suffix, node: suffix)
    data = yaml.load((REPO / "mkdocs.yml").read_text(), Loader=Loader)  # a SafeLoader subclass
    assert isinstance(data, dict)
    return data


def nav_pages(nav: object) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [page for item in nav for page in nav_pages(item)]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in nav_pages(value)]
    return []


def test_every_nav_page_exists_in_docs_or_is_published_from_the_repository() -> None:
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        from docs_hooks import REPO_PAGES
    finally:
        sys.path.remove(str(REPO / "scripts"))
    pages = nav_pages(mkdocs_config()["nav"])
    assert len(pages) >= 20
    for page in pages:
        source = REPO / page if page in REPO_PAGES else REPO / "docs" / page
        assert source.is_file(), page


def test_site_builds_offline_in_lint_and_serves_with_make_docs() -> None:
    config = mkdocs_config()
    theme = config["theme"]
    assert isinstance(theme, dict) and theme["font"] is False  # no Google Fonts
    assert "_pending/" in str(config["exclude_docs"])
    makefile = (REPO / "Makefile").read_text()
    lint = makefile.split("\nlint:", 1)[1].split("\n\n", 1)[0]
    assert "mkdocs build --strict" in lint
    assert re.search(r"^docs:.*\n\t\$\(RUN\) mkdocs serve$", makefile, re.M)
