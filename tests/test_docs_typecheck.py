"""Every Python example of the manual passes ``mypy --strict``, checked as a user's own code would be.

Checked, in one mypy run:

- every ```` ```python ```` block of README.md and of the pages under docs/, each as a module of its own;
- every file in docs/examples/;
- a module that imports every name of every public module's ``__all__`` (a typed user can import them).

How to write an example so that it is checked (the conventions this test applies):

- A block is a whole module: it imports what it uses.
- A block with ``await``, ``async with`` or ``async for`` outside any function is read as the body of an
  ``async def`` (the reader runs it inside their own async function): a snippet can show the interesting
  part without the ``trio.run`` boilerplate.
- ``API_KEY`` and ``ACCESS_TOKEN`` (Kite), ``APP_KEY`` and ``SECRET_KEY`` (XTS) stand for the reader's
  credentials: a block may use them without defining them (they are declared ``str``).
  tests/test_examples.py, which runs examples, binds them to the simulators' demo credentials.
- ``<!-- fragment -->`` on the line right before the opening fence leaves a block out, for a block that is
  deliberately not Python on its own. Keep these rare: a reader copies what the docs show.

mypy sees the library as an installed package: the check runs in an empty directory (not the checkout,
which mypy would otherwise search first), and finds ``trading_ws`` in a directory holding only a link to
the package this interpreter imports, whatever the install mode. (mypy cannot see through the import hook
of a default ``pip install -e .``: see README.md.) Errors inside the library itself are not reported here
(``follow_imports = silent``, as for an installed package); the project's own ``mypy`` run covers them.

mypy comes with the ``test`` extra (and ``lint``): where it is not installed these tests are skipped,
unless the environment variable ``CI`` is set (to anything but ``""``, ``0`` or ``false``), where they fail.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import os
import pkgutil
import re
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
EXAMPLE_FILES = sorted((ROOT / "docs" / "examples").glob("*.py"))

#: The reader's credentials: names a block may use without defining them.
PLACEHOLDERS = ("API_KEY", "ACCESS_TOKEN", "APP_KEY", "SECRET_KEY")

FRAGMENT = "<!-- fragment -->"
_FENCE = re.compile(r"^```(?P<info>[^\n]*)\n(?P<body>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


@attrs.frozen
class Example:
    """One piece of code to check: where it comes from and the module mypy sees."""

    origin: str
    """``page.md:line`` of the block's first code line, or the example file's path."""
    module: str
    """The module name it is written to (unique within the run)."""
    source: str
    """The module as checked."""
    first_line: int
    """The line of the module that holds the block's first line (after what this test added)."""


def python_blocks(page: Path) -> Iterator[tuple[int, str, bool]]:
    """(first code line, code, marked as a fragment) for each ```python block of `page`."""
    text = page.read_text(encoding="utf-8")
    for match in _FENCE.finditer(text):
        if match.group("info").strip() != "python":
            continue
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        first_line = text.count("\n", 0, match.start("body")) + 1
        yield first_line, match.group("body"), before.strip() == FRAGMENT


class _TopLevelAwait(ast.NodeVisitor):
    """Finds ``await``, ``async with``, ``async for`` or an async comprehension outside any function."""

    def __init__(self) -> None:
        self.found = False

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        pass

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        pass

    def visit_Lambda(self, node: ast.Lambda) -> None:
        pass

    def visit_Await(self, node: ast.Await) -> None:
        self.found = True

    def visit_AsyncWith(self, node: ast.AsyncWith) -> None:
        self.found = True

    def visit_AsyncFor(self, node: ast.AsyncFor) -> None:
        self.found = True

    def visit_comprehension(self, node: ast.comprehension) -> None:
        self.found = self.found or bool(node.is_async)
        self.generic_visit(node)


def bound_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            names.add(node.id)
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name.split(".")[0])
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return names


def as_module(code: str) -> tuple[str, int]:
    """The module mypy checks for a block, and the line of it that holds the block's first line."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code, 1  # mypy reports it, for this block alone
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    placeholders = sorted((used & set(PLACEHOLDERS)) - bound_names(tree))
    header = [f"{name}: str" for name in placeholders]
    finder = _TopLevelAwait()
    finder.visit(tree)
    if finder.found:
        header.append("async def _example() -> None:")
        code = textwrap.indent(code, "    ")
    return "\n".join([*header, code]), len(header) + 1


def public_modules() -> list[str]:
    """The public modules of trading_ws: no part of the dotted name starts with an underscore."""
    import trading_ws

    names = ["trading_ws"]
    for info in pkgutil.walk_packages(trading_ws.__path__, "trading_ws."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


def exports_module() -> str:
    """A module importing every name of every public module's ``__all__``."""
    lines = []
    for name in public_modules():
        exported = importlib.import_module(name).__all__
        if exported:
            lines.append(f"from {name} import (")
            lines.extend(f"    {e} as _{i}_{e}," for i, e in enumerate(exported))
            lines.append(")")
    return "\n".join(lines) + "\n"


#: Wrong on purpose: the run must report these errors, or it checks nothing (say, if it could not find
#: trading_ws, or found it untyped).
CANARY = """\
from trading_ws import Mode, Tick


def untyped(x):
    return x


mode: Mode = "full"
price: str = Tick.__init__.__name__ and 1.0
"""
CANARY_CODES = ("[no-untyped-def]", "[assignment]")


def collect() -> list[Example]:
    examples = []
    for page in PAGES:
        stem = re.sub(r"\W", "_", page.relative_to(ROOT).with_suffix("").as_posix()).lower()
        for n, (line, code, fragment) in enumerate(python_blocks(page), start=1):
            if fragment:
                continue
            source, first = as_module(code)
            origin = f"{page.relative_to(ROOT).as_posix()}:{line}"
            examples.append(Example(origin, f"block_{stem}_{n}", source, first))
    for path in EXAMPLE_FILES:
        origin = path.relative_to(ROOT).as_posix()
        examples.append(Example(origin, f"file_{path.stem}", path.read_text(encoding="utf-8"), 1))
    return examples


EXAMPLES = collect()


def mypy_required() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false")


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Run mypy --strict once over every example; the error lines per module name."""
    try:
        from mypy import api
    except ImportError:
        if mypy_required():
            pytest.fail("mypy is not installed, and CI is set: install the test extra before this test")
        pytest.skip("mypy is not installed (it comes with the test extra: pip install -e '.[test]')")
    import trading_ws

    base = tmp_path_factory.mktemp("docs_typecheck")
    code_dir = base / "code"
    code_dir.mkdir()
    files = []
    extra = [
        Example("(exports)", "all_exports", exports_module(), 1),
        Example("(canary)", "canary", CANARY, 1),
    ]
    for example in [*EXAMPLES, *extra]:
        path = code_dir / f"{example.module}.py"
        path.write_text(example.source, encoding="utf-8")
        files.append(str(path))
    # Only the package, nothing else of the checkout (tests/, benchmarks/ would be importable otherwise).
    site = base / "site"
    site.mkdir()
    (site / "trading_ws").symlink_to(Path(trading_ws.__file__).parent, target_is_directory=True)
    config = base / "mypy.ini"
    config.write_text(
        "[mypy]\n"
        "strict = True\n"
        "warn_unreachable = True\n"
        f"python_version = {sys.version_info.major}.{sys.version_info.minor}\n"
        f"mypy_path = {site}\n"
        "[mypy-trading_ws.*]\n"
        "follow_imports = silent\n"
        "[mypy-trading_ws]\n"
        "follow_imports = silent\n",
        encoding="utf-8",
    )
    cache = ROOT / ".mypy_cache" / "docs-typecheck"
    with contextlib.chdir(code_dir):
        stdout, stderr, status = api.run(
            ["--config-file", str(config), "--cache-dir", str(cache), "--no-error-summary", *files]
        )
    assert status in (0, 1), (
        f"mypy did not finish (status {status}; a syntax error in any example stops the whole run):\n"
        f"{stdout}\n{stderr}"
    )
    errors: dict[str, list[str]] = {}
    for line in stdout.splitlines():
        match = re.match(r"(?P<path>[^:]+\.py):(?P<line>\d+): (?P<rest>.*)", line)
        assert match is not None, f"unexpected mypy output: {line!r}\n{stdout}"
        module = Path(match.group("path")).stem
        errors.setdefault(module, []).append(f"{match.group('line')}: {match.group('rest')}")
    return errors


def report(example: Example, errors: list[str]) -> str:
    lines = []
    for error in errors:
        number, _, rest = error.partition(": ")
        where = example.origin
        if ":" in where:  # a block: map the module's line back to the page's
            page, first = where.rsplit(":", 1)
            where = f"{page}:{int(first) + int(number) - example.first_line}"
        else:
            where = f"{where}:{number}"
        lines.append(f"{where}: {rest}")
    return "\n".join(lines)


def test_the_examples_are_found() -> None:
    origins = {e.origin.split(":")[0] for e in EXAMPLES}
    assert {
        "README.md",
        "docs/getting-started.md",
        "docs/embedding.md",
        "docs/examples/embed_manager.py",
    } <= origins
    assert len(EXAMPLES) >= 8
    assert len({e.module for e in EXAMPLES}) == len(EXAMPLES)


def test_fragment_markers_mark_python_blocks() -> None:
    """A marker is followed by a python block, and the markers stay rare."""
    marked = 0
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in re.finditer(re.escape(FRAGMENT), text):
            following = text[match.end() :].lstrip(" \t").split("\n", 2)
            assert following[1].strip() == "```python", (
                f"{page.name}: {FRAGMENT} not right before a python block"
            )
            marked += 1
    blocks = sum(1 for page in PAGES for _ in python_blocks(page))
    assert marked <= max(1, blocks // 5), "more than one block in five is marked as a fragment"


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.origin for e in EXAMPLES])
def test_example_passes_mypy_strict(example: Example, mypy_errors: dict[str, list[str]]) -> None:
    errors = mypy_errors.get(example.module, [])
    assert not errors, f"mypy --strict on {example.origin}:\n{report(example, errors)}"


def test_every_public_name_is_importable_by_a_typed_user(mypy_errors: dict[str, list[str]]) -> None:
    assert not mypy_errors.get("all_exports"), "\n".join(mypy_errors["all_exports"])


def test_the_run_reports_errors(mypy_errors: dict[str, list[str]]) -> None:
    """No rubber stamp: the deliberately wrong module gets its errors, and mypy found the library (a
    ``Mode`` annotation is checked against the library's own type)."""
    canary = mypy_errors.get("canary", [])
    for code in CANARY_CODES:
        assert any(code in line for line in canary), canary
    assert not any("import-not-found" in line or "import-untyped" in line for line in canary), canary
    assert any('"str", variable has type "Mode"' in line for line in canary), canary


def test_blocks_become_modules_by_the_conventions() -> None:
    source, first = as_module("from trading_ws import Tick\nawait x\nprint(Tick)\n")
    assert source.startswith("async def _example() -> None:\n    from trading_ws import Tick\n")
    assert first == 2
    source, first = as_module("print(API_KEY)\nAPP_KEY = 'mine'\nprint(APP_KEY)\n")
    assert source.splitlines()[0] == "API_KEY: str"
    assert first == 2
    source, first = as_module("async def main() -> None:\n    await f()\n")
    assert (source, first) == ("async def main() -> None:\n    await f()\n", 1)
    assert as_module("def broken(:\n") == ("def broken(:\n", 1)
