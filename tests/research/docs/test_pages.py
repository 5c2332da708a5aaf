"""README.md and docs/: in step with the code and the saved artifacts, linked, free of history.

The generated blocks are rendered once per module (the command-line reference imports every
command's module) and compared with the committed pages without writing anything.
"""
import difflib
import os
import re
import shlex

import pytest

from research import config as config_lib
from research import configs
from research.configs import NAMED_CONFIGS
from research.docs import cli_reference, generate, markers, tables

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def read(page):
    with open(os.path.join(REPO, page), encoding="utf-8") as f:
        return f.read()


@pytest.fixture(scope="module")
def parsers():
    return cli_reference.parsers(REPO)


@pytest.fixture(scope="module")
def rendered(parsers, monkeypatch_module):
    """{page: (committed text, generated text)}, the parsers captured once."""
    monkeypatch_module.setattr(cli_reference, "parsers", lambda root: parsers)
    return {page: (read(page), generate.render(REPO, page, read(page))) for page in generate.pages(REPO)}


@pytest.fixture(scope="module")
def monkeypatch_module():
    patch = pytest.MonkeyPatch()
    yield patch
    patch.undo()


def test_make_docs_would_change_no_page(rendered):
    stale = {page: (old, new) for page, (old, new) in rendered.items() if old != new}
    diff = "".join(line for page, (old, new) in stale.items() for line in list(difflib.unified_diff(
        old.splitlines(True), new.splitlines(True), page, page + " (generated)"))[:40])
    assert not stale, f"run `make docs`: {', '.join(stale)} out of date\n{diff}"


def test_every_page_names_known_blocks_only():
    for page in generate.pages(REPO):
        unknown = set(markers.block_names(read(page), page)) - set(generate.BLOCKS)
        assert not unknown, f"{page}: unknown generated blocks {unknown}"


def section(text, heading):
    """The text under `heading` up to the next heading of the same or a higher level."""
    level = heading.split(" ")[0]
    start = text.index(heading + "\n")
    end = re.compile(rf"^#{{1,{len(level)}}} ", re.M).search(text, start + len(heading) + 1)
    return text[start:end.start() if end else len(text)]


def test_every_config_field_and_named_config_is_documented():
    page = read("docs/configs.md")
    fields = section(page, "## Every field")
    missing = [f for f in config_lib.Config.__dataclass_fields__ if f"| `{f}` |" not in fields]
    assert not missing, f"docs/configs.md lacks the fields {missing}: run `make docs`"
    named = section(page, "## Named configs")
    missing = [name for name in NAMED_CONFIGS if f"| `{name}` |" not in named]
    assert not missing, f"docs/configs.md lacks the named configs {missing}: run `make docs`"


def test_every_command_and_flag_is_documented(parsers):
    page = read("docs/command_lines.md")
    assert len(parsers) >= 20            # the modules and scripts/*.py are all found
    for command, parser in parsers:
        text = section(page, f"### `{command}`")
        for action in cli_reference.options(parser):
            names = action.option_strings or [action.metavar or action.dest]
            assert all(name in text for name in names), f"docs/command_lines.md: {command} lacks {names}"


def test_the_readme_is_a_front_door():
    lines = read("README.md").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move details to docs/"
    text = "\n".join(lines)
    assert "make test" in text and "make test-all" in text
    assert "source .venv/bin/activate" in text


def prose_pages():
    """The product's pages: README, CHANGELOG and docs/, without working notes (docs/_*.md)."""
    return ["README.md", "CHANGELOG.md"] + [p for p in generate.pages(REPO)
                                            if p != "README.md" and not os.path.basename(p).startswith("_")]


def hand_written(text):
    """`text` without its generated blocks (their provenance lines name commits)."""
    return re.sub(r"<!-- begin generated: .*?<!-- end generated: [^>]*-->", "", text, flags=re.S)


HISTORY = [
    (re.compile(r"\bsessions?\b", re.I), "a session"),
    (re.compile(r"\bissues?\s+#?\d+", re.I), "an issue number"),
    (re.compile(r"(?<![\w/.-])#\d+\b"), "a bare #number"),
    (re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b"), "a commit hash"),
]


@pytest.mark.parametrize("pattern,what", HISTORY, ids=[w for _, w in HISTORY])
def test_pages_name_no_session_issue_or_commit(pattern, what):
    found = [f"{page}:{n}: {line.strip()}" for page in prose_pages()
             for n, line in enumerate(hand_written(read(page)).splitlines(), start=1) if pattern.search(line)]
    assert not found, f"{what} in the product's pages:\n" + "\n".join(found)


def source_files():
    """The project's Python files (this test file, which spells the patterns out, aside)."""
    for folder in ("research", "kernels", "benchmarks", "scripts", "tests"):
        for root, _, files in os.walk(os.path.join(REPO, folder)):
            for name in sorted(files):
                path = os.path.join(root, name)
                if name.endswith(".py") and path != os.path.abspath(__file__):
                    yield os.path.relpath(path, REPO)


def test_source_names_no_issue_number():
    issue_number = dict((w, p) for p, w in HISTORY)["an issue number"]
    found = [f"{path}:{n}: {line.strip()}" for path in source_files()
             for n, line in enumerate(read(path).splitlines(), start=1) if issue_number.search(line)]
    assert not found, "an issue number in the code's docstrings or comments:\n" + "\n".join(found)


def test_history_patterns_catch_what_they_are_for():
    lines = {"a session": "measured in the fifth session", "an issue number": "goals of issue 13",
             "a bare #number": "fixed in #14", "a commit hash": "at commit a6d7783 the step took"}
    for pattern, what in HISTORY:
        assert pattern.search(lines[what]), what
    assert not any(p.search("tensorflow#54479 and keras/src/x.py#L10") for p, w in HISTORY if w != "a session")


def anchors(page):
    """The GitHub anchors of a Markdown page's headings (outside code blocks)."""
    text = re.sub(r"```.*?```", "", read(page), flags=re.S)
    return {tables.slug(m.group(1).replace("`", "")) for m in re.finditer(r"^#+ (.+)$", text, re.M)}


def test_relative_links_resolve():
    broken = []
    for page in prose_pages():
        folder = os.path.dirname(page)
        for target in re.findall(r"\]\(([^)\s]+)\)", re.sub(r"```.*?```", "", read(page), flags=re.S)):
            if re.match(r"[a-z]+:", target):
                continue                                 # http(s), mailto
            path, _, anchor = target.partition("#")
            resolved = os.path.normpath(os.path.join(folder, path)) if path else page
            if not os.path.exists(os.path.join(REPO, resolved)):
                broken.append(f"{page}: {target} (no {resolved})")
            elif anchor and resolved.endswith(".md") and anchor not in anchors(resolved):
                broken.append(f"{page}: {target} (no heading #{anchor} in {resolved})")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_every_docs_page_is_linked_from_the_index():
    index = read("docs/index.md")
    pages = [os.path.basename(p) for p in generate.pages(REPO)
             if p.startswith("docs/") and not os.path.basename(p).startswith("_") and p != "docs/index.md"]
    missing = [p for p in pages if f"]({p})" not in index and f"]({p}#" not in index]
    assert not missing, f"docs/index.md does not link {missing}"


def test_licence_and_citation_match_setup_cfg():
    setup = read("setup.cfg")
    assert re.search(r"^license = Apache-2.0$", setup, re.M)
    licence = read("LICENSE")
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
    assert "END OF TERMS AND CONDITIONS" in licence
    version = re.search(r"^version = (\S+)$", setup, re.M).group(1)
    citation = read("CITATION.cff")
    assert re.search(rf"^version: {re.escape(version)}$", citation, re.M)
    assert re.search(r"^license: Apache-2.0$", citation, re.M) and "cff-version: 1.2.0" in citation
    assert f"## {version}" in read("CHANGELOG.md")


def documented_commands():
    """(page, command line) of every `python -m research...` / `python scripts/...` line in the
    hand-written code blocks of the pages: continuations joined, comments, environment
    assignments and optional `[...]` parts dropped."""
    found = []
    for page in prose_pages():
        for block in re.findall(r"```\n(.*?)```", hand_written(read(page)), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = re.sub(r"\s+#.*$", "", re.sub(r"\[--[^\[\]]*\]", "", line)).strip()
                line = re.sub(r"^(\w+='[^']*'\s+)+", "", line)            # TF_CONFIG='...' python ...
                if line.startswith(("python -m research", "python scripts/")):
                    found.append((page, line))
    return found


def test_documented_commands_parse(parsers):
    by_command = dict(parsers)
    found = documented_commands()
    assert len(found) >= 30
    for page, line in found:
        words = shlex.split(line)
        command = " ".join(words[:3] if words[1] == "-m" else words[:2])
        assert command in by_command, f"{page}: {line}: no such command"
        if "--help" in words:
            continue
        try:
            args = by_command[command].parse_args(words[3 if words[1] == "-m" else 2:])
        except SystemExit:
            pytest.fail(f"{page}: {line}: does not parse (see the error above)")
        named = getattr(args, "config", None) or getattr(args, "base", None)
        if named in NAMED_CONFIGS:                   # its --set values are valid for that config
            config_lib.apply_overrides(configs.load_config(named), getattr(args, "overrides", []))
