"""The documentation is complete and its links hold: every public Python callable has a
docstring with an example, every function of include/shmaccel.h has a comment, and every local
link in README.md and docs/*.md reaches an existing file (and heading).

Pure introspection and file reading: no worker is started.
"""

import ast
import inspect
import os
import re
from pathlib import Path

import pytest

import shmaccel

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "pyshim" / "shmaccel"
HEADER = ROOT / "include" / "shmaccel.h"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

EXAMPLE = re.compile(r">>>|\bexample\b", re.IGNORECASE)


def public_members(cls):
    """(name, raw attribute) of the public members a user reaches on cls, inherited ones too."""
    for name in dir(cls):
        if not name.startswith("_"):
            yield name, inspect.getattr_static(cls, name)


def test_every_public_name_has_a_docstring_with_an_example():
    missing = []
    for name in shmaccel.__all__:
        obj = getattr(shmaccel, name)
        if not callable(obj):
            continue  # DTYPES, OPS: tuples, documented in the guide
        doc = inspect.getdoc(obj) or ""
        if not EXAMPLE.search(doc):
            missing.append(name)
    assert missing == [], f"no docstring with an example ('>>>' or 'Example'): {missing}"


@pytest.mark.parametrize("cls", [shmaccel.Pool, shmaccel.SharedArray], ids=lambda c: c.__name__)
def test_every_public_method_has_a_docstring_with_an_example(cls):
    missing, undocumented = [], []
    for name, raw in public_members(cls):
        if isinstance(raw, (staticmethod, classmethod)):
            raw = raw.__func__
        if inspect.isroutine(raw) or isinstance(raw, property):
            if not EXAMPLE.search(inspect.getdoc(raw) or ""):
                missing.append(name)
        elif (inspect.isgetsetdescriptor(raw) or inspect.ismemberdescriptor(raw)) and not (
            raw.__doc__ or ""
        ).strip():
            undocumented.append(name)  # attributes defined in C: a docstring at least
    assert missing == [], f"{cls.__name__}: no docstring with an example: {missing}"
    assert undocumented == [], f"{cls.__name__}: attributes without a docstring: {undocumented}"


def test_every_public_definition_in_the_package_has_a_docstring():
    """Non-underscore functions, classes and methods of every module of the package, read from
    the source (so that optional modules need not import)."""
    missing = []

    def visit(nodes, where):
        for node in nodes:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if node.name.startswith("_"):
                    continue
                if ast.get_docstring(node) is None:
                    missing.append(f"{where}{node.name}")
                if isinstance(node, ast.ClassDef):
                    visit(node.body, f"{where}{node.name}.")

    for path in sorted(PACKAGE.glob("*.py")):
        visit(ast.parse(path.read_text()).body, f"{path.name}: ")
    assert missing == [], f"no docstring: {missing}"


def header_functions():
    """(name, comment before it or None) for each function the header declares or defines.

    Simple on purpose: a declaration starts at column 0 with its return type and has
    `sa_name(` on its first line, or is a `static inline` definition whose name starts the
    next line. The comment is the /* ... */ block ending on the line just above."""
    lines = HEADER.read_text().splitlines()
    declaration = re.compile(r"^(?![#/ *}]|typedef|_Static_assert)[\w\s\*]*?\b(sa_\w+)\s*\(")
    found = []
    for i, line in enumerate(lines):
        match = declaration.match(line)
        if match is None:
            continue
        start = i - 1 if i > 0 and lines[i - 1].startswith("static inline") else i
        end = start - 1
        comment = None
        if end >= 0 and lines[end].rstrip().endswith("*/"):
            first = end
            while first > 0 and "/*" not in lines[first]:
                first -= 1
            comment = "\n".join(lines[first:end + 1])
        found.append((match.group(1), comment))
    return found


def test_header_parser_finds_the_api():
    names = {name for name, _ in header_functions()}
    assert {"sa_strerror", "sa_client_connect", "sa_submit", "sa_run", "sa_slot_word",
            "sa_pool_socket_path"} <= names
    assert len(names) >= 30


def test_every_header_function_has_a_comment_with_an_example():
    functions = header_functions()
    uncommented = [name for name, comment in functions if comment is None]
    without_example = [name for name, comment in functions
                       if comment is not None and not EXAMPLE.search(comment)]
    assert uncommented == [], f"include/shmaccel.h: no comment block before {uncommented}"
    assert without_example == [], f"include/shmaccel.h: no example for {without_example}"


def markdown_parts(text):
    """(headings, links) of a markdown text, ignoring fenced code blocks."""
    headings, links, fenced = [], [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            continue
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            headings.append(heading.group(1))
        links.extend(re.findall(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", line))
    return headings, links


def anchors(path):
    """GitHub's anchors for the headings of a markdown file (duplicates get -1, -2, ...)."""
    seen, result = {}, set()
    for heading in markdown_parts(path.read_text())[0]:
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        result.add(slug if count == 0 else f"{slug}-{count}")
    return result


def local_links():
    for doc in DOCS:
        for target in markdown_parts(doc.read_text())[1]:
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            yield doc, target


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_local_links_reach_existing_files_and_headings(doc):
    broken = []
    for source, target in local_links():
        if source != doc:
            continue
        path, _, fragment = target.partition("#")
        resolved = (doc.parent / path).resolve() if path else doc
        if not resolved.exists():
            broken.append(f"{target} (no file {os.path.relpath(resolved, ROOT)})")
        elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
            broken.append(f"{target} (no heading #{fragment} in {resolved.name})")
    assert broken == [], f"{doc.relative_to(ROOT)}: broken links: {broken}"


def test_the_user_guide_mentions_every_public_name():
    guide = (ROOT / "docs" / "USER_GUIDE.md").read_text()
    absent = [name for name in shmaccel.__all__ if name not in guide]
    absent += [f"Pool.{name}" for name, _ in public_members(shmaccel.Pool) if name not in guide]
    assert absent == [], f"docs/USER_GUIDE.md does not mention {absent}"
