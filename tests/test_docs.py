"""The documentation keeps up with the code: every command and option of the CLI is in docs/cli.md
under its own command's heading, the README stays short, and no relative link points nowhere."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from alexandria.cli import cli

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
CLI_DOC = DOCS / "cli.md"
README_MAX_WORDS = 1600

# [text](target) and [text]: target, outside code; images too.
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)


def command_sections(text: str) -> dict[str, str]:
    """`## alexandria NAME` heading -> the text up to the next second-level heading."""
    sections: dict[str, str] = {}
    name, lines = None, []
    for line in text.splitlines():
        if line.startswith("## "):
            if name is not None:
                sections[name] = "\n".join(lines)
            heading = re.fullmatch(r"## `?alexandria ([\w-]+)`?.*", line.strip())
            name, lines = (heading.group(1) if heading else None), []
        elif name is not None:
            lines.append(line)
    if name is not None:
        sections[name] = "\n".join(lines)
    return sections


def documented_options(command: click.Command) -> list[str]:
    """Every --long-name of the command's options, --no-x secondary names included, not --help."""
    names = []
    for param in command.params:
        if isinstance(param, click.Option):
            names += [n for n in param.opts + param.secondary_opts if n.startswith("--")]
    return [n for n in names if n != "--help"]


def mentions(section: str, option: str) -> bool:
    """The option as a whole name: --json is not found inside --log-json."""
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", section) is not None


def relative_links(markdown: str) -> list[str]:
    prose = CODE_SPAN.sub("", FENCE.sub("", markdown))
    targets = INLINE_LINK.findall(prose) + REFERENCE_LINK.findall(prose)
    return [t for t in targets if not re.match(r"^([a-z][a-z0-9+.-]*:|#|//)", t, re.IGNORECASE)]


def test_every_command_and_option_is_documented_in_docs_cli():
    sections = command_sections(CLI_DOC.read_text(encoding="utf-8"))
    missing = []
    for name, command in sorted(cli.commands.items()):
        if name not in sections:
            missing.append(f"## alexandria {name}")
            continue
        missing += [f"{name} {option}" for option in documented_options(command)
                    if not mentions(sections[name], option)]
    assert not missing, f"not documented in docs/cli.md: {', '.join(missing)}"


def test_docs_cli_has_no_section_for_a_command_that_does_not_exist():
    sections = command_sections(CLI_DOC.read_text(encoding="utf-8"))
    assert sorted(set(sections) - set(cli.commands)) == []


def test_readme_is_at_most_1600_words():
    words = len(README.read_text(encoding="utf-8").split())
    assert words <= README_MAX_WORDS, f"README.md has {words} words; move detail to docs/"


@pytest.mark.parametrize("doc", [README, *sorted(DOCS.glob("*.md"))], ids=lambda p: p.name)
def test_every_relative_link_points_to_a_file_that_exists(doc):
    broken = []
    for target in relative_links(doc.read_text(encoding="utf-8")):
        path = target.split("#", 1)[0].split("?", 1)[0]
        if path and not (doc.parent / path).exists():
            broken.append(target)
    assert not broken, f"{doc.relative_to(ROOT)} links to missing files: {', '.join(broken)}"


def heading_anchors(markdown: str) -> set[str]:
    """GitHub's anchors: lowercased heading text, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*#*$", FENCE.sub("", markdown), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("doc", [README, *sorted(DOCS.glob("*.md"))], ids=lambda p: p.name)
def test_every_link_to_a_heading_finds_that_heading(doc):
    text = doc.read_text(encoding="utf-8")
    same_page = re.findall(r"\]\((#[^)\s]+)\)", CODE_SPAN.sub("", FENCE.sub("", text)))
    broken = []
    for target in relative_links(text) + same_page:
        path, _, anchor = target.partition("#")
        file = doc.parent / path if path else doc
        if anchor and file.suffix == ".md" and file.exists():
            if anchor not in heading_anchors(file.read_text(encoding="utf-8")):
                broken.append(target)
    assert not broken, f"{doc.relative_to(ROOT)} links to missing headings: {', '.join(broken)}"


def test_the_link_checker_sees_links_and_ignores_code_and_urls():
    text = ("See [the CLI](docs/cli.md#ingest), ![a picture](img/p.png) and [x](https://example.org).\n"
            "`[not](a-link.md)`\n```\n[neither](this.md)\n```\n[ref]: docs/operations.md\n"
            "[anchor](#exit-codes)\n")
    assert relative_links(text) == ["docs/cli.md#ingest", "img/p.png", "docs/operations.md"]


def test_the_section_reader_keeps_options_in_their_own_command():
    text = ("# CLI\n## alexandria search\n`--top-k`\n### Filters\n`--author`\n"
            "## alexandria status\n`--verify`\n## Exit codes\n`--json`\n")
    sections = command_sections(text)
    assert set(sections) == {"search", "status"}
    assert mentions(sections["search"], "--author") and not mentions(sections["status"], "--json")
    assert not mentions("--log-json", "--json")
    assert heading_anchors("## Moving to a server: `alexandria export`\n### A 12 GB card\n") == {
        "moving-to-a-server-alexandria-export", "a-12-gb-card"}
