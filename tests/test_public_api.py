"""The public surface: every name a user may import is importable, documented in its docstring, and
mentioned in the manual.

A module is public when no part of its dotted name starts with an underscore (``trading_ws``,
``trading_ws.brokers.kite``, ``trading_ws.sim``...); its public names are its ``__all__``. For each one:

- a class or function carries a docstring of its own, and so does every public method and property its
  class body defines;
- a constant or type alias (which cannot carry a runtime docstring) is documented where it is defined, by
  a ``#:`` comment on the line above or a string right after the assignment (the attribute-docstring
  conventions), or else named in backticks in the public module's docstring;
- the name appears in code (a code span or a fenced block) in README.md or a page of docs/, so a reader
  can find it: docs/architecture.md keeps a map of the whole public surface.

Whether a typed user can import every name (mypy's view of re-exports) is checked by
tests/test_docs_typecheck.py, in its one mypy run.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import pkgutil
import re
import tomllib
import typing
from importlib import resources
from pathlib import Path
from types import ModuleType

import pytest

import trading_ws

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def public_modules() -> list[str]:
    """The dotted names of the public modules of trading_ws (packages are imported to look inside them)."""
    names = ["trading_ws"]
    for info in pkgutil.walk_packages(trading_ws.__path__, "trading_ws."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


PUBLIC_MODULES = public_modules()


def exports() -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for name in PUBLIC_MODULES:
        module = importlib.import_module(name)
        pairs.extend((name, export) for export in getattr(module, "__all__", ()))
    return pairs


EXPORTS = exports()
EXPORT_IDS = [f"{module}.{name}" for module, name in EXPORTS]


def code_in_docs() -> str:
    """All the code of the manual: fenced blocks and inline code spans of README.md and docs/**/*.md."""
    parts: list[str] = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        fence = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
        parts.extend(m.group(1) for m in fence.finditer(text))
        parts.extend(re.findall(r"`([^`\n]+)`", fence.sub("", text)))
    return "\n".join(parts)


def mentions(text: str, name: str) -> bool:
    """`name` as a whole word of `text` (``xts.decode_message`` mentions ``decode_message``)."""
    return re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text) is not None


def defining_source(module_name: str, name: str) -> tuple[list[str], list[ast.stmt], int] | None:
    """Where `name` is assigned, following ``from .x import name as name`` chains from `module_name`:
    the defining module's lines, its top-level statements and the index of the assignment."""
    module = importlib.import_module(module_name)
    assert module.__file__ is not None
    source = Path(module.__file__).read_text(encoding="utf-8")
    body = ast.parse(source).body
    for index, node in enumerate(body):
        if isinstance(node, ast.Assign):
            targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            targets = [node.target.id]
        else:
            targets = []
        if name in targets:
            return source.splitlines(), body, index
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    origin = node.module or ""
                    if node.level:
                        origin = importlib.util.resolve_name("." * node.level + origin, module.__package__)
                    return defining_source(origin, alias.name)
    return None


def has_attribute_doc(module_name: str, name: str) -> bool:
    """A ``#:`` comment right above the assignment, or a string literal right after it."""
    found = defining_source(module_name, name)
    if found is None:
        return False
    lines, body, index = found
    node = body[index]
    if node.lineno >= 2 and lines[node.lineno - 2].strip().startswith("#:"):
        return True
    after = body[index + 1] if index + 1 < len(body) else None
    return (
        isinstance(after, ast.Expr)
        and isinstance(after.value, ast.Constant)
        and isinstance(after.value.value, str)
        and bool(after.value.value.strip())
    )


def own_doc(obj: object) -> str:
    doc = getattr(obj, "__doc__", None)
    return doc.strip() if isinstance(doc, str) else ""


def undocumented_members(cls: type) -> list[str]:
    """The public methods and properties `cls`'s own body defines that carry no docstring."""
    missing = []
    for attr, value in vars(cls).items():
        if attr.startswith("_"):
            continue
        if isinstance(value, property):
            target: object = value.fget
        elif isinstance(value, staticmethod | classmethod):
            target = value.__func__
        elif inspect.isfunction(value):
            target = value
        else:
            continue  # fields, enum members, nested constants
        if not own_doc(target):
            missing.append(attr)
    return missing


def test_the_public_modules_are_found() -> None:
    assert {
        "trading_ws",
        "trading_ws.brokers",
        "trading_ws.brokers.kite",
        "trading_ws.brokers.xts",
        "trading_ws.cli",
        "trading_ws.sim",
    } <= set(PUBLIC_MODULES)
    assert len(EXPORTS) > 100


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_public_module_has_a_docstring_and_an_all(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert own_doc(module), f"{module_name} has no docstring"
    names = getattr(module, "__all__", None)
    assert isinstance(names, list), f"{module_name} does not say what is public (no __all__ list)"
    assert all(isinstance(n, str) for n in names)
    assert len(set(names)) == len(names), f"{module_name}.__all__ lists a name twice"


def test_every_member_of_the_event_union_is_exported_from_the_package() -> None:
    members = typing.get_args(trading_ws.Event)
    status = typing.get_args(trading_ws.StatusEvent)
    assert set(status) < set(members)
    assert {c.__name__ for c in members} >= {
        "Tick",
        "OrderUpdate",
        "BrokerMessage",
        "BrokerError",
        "Connected",
        "Disconnected",
        "Reconnecting",
        "Resubscribed",
        "Gap",
        "Stale",
        "Candle",
        "OpenInterest",
        "MarketStatus",
        "InstrumentPropertyChange",
    }
    star: dict[str, object] = {}
    exec("from trading_ws import *", star)
    for cls in members:
        assert cls.__name__ in trading_ws.__all__, cls
        assert getattr(trading_ws, cls.__name__) is cls
        assert star[cls.__name__] is cls


def test_the_package_ships_its_type_information() -> None:
    """PEP 561: without ``py.typed`` in the installed package, mypy ignores its annotations."""
    assert resources.files("trading_ws").joinpath("py.typed").is_file()
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "py.typed" in config["tool"]["setuptools"]["package-data"]["trading_ws"]


def test_decode_message_is_the_xts_entry_point() -> None:
    from trading_ws.brokers import xts
    from trading_ws.brokers.xts import _codec

    assert "decode_message" in xts.__all__
    assert xts.decode_message is _codec.decode_message


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_a_star_import_gives_exactly_all(module_name: str) -> None:
    module = importlib.import_module(module_name)
    namespace: dict[str, object] = {}
    exec(f"from {module_name} import *", namespace)
    namespace.pop("__builtins__")
    assert sorted(namespace) == sorted(module.__all__)


@pytest.mark.parametrize(("module_name", "name"), EXPORTS, ids=EXPORT_IDS)
def test_every_export_is_importable_and_documented(module_name: str, name: str) -> None:
    module: ModuleType = importlib.import_module(module_name)
    obj = getattr(module, name)  # importable: `from module import name` is this lookup
    if inspect.isclass(obj) or inspect.isroutine(obj):
        assert own_doc(obj), f"{module_name}.{name} has no docstring"
        if inspect.isclass(obj):
            missing = undocumented_members(obj)
            assert not missing, f"{module_name}.{name}: public members without a docstring: {missing}"
    else:
        in_module_doc = mentions(" ".join(re.findall(r"`([^`]+)`", own_doc(module))), name)
        assert has_attribute_doc(module_name, name) or in_module_doc, (
            f"{module_name}.{name} (a {type(obj).__name__}) is documented nowhere: give it a #: comment or a "
            f"docstring after its assignment, or name it in the module docstring"
        )


DOCS_CODE = code_in_docs()


@pytest.mark.parametrize(("module_name", "name"), EXPORTS, ids=EXPORT_IDS)
def test_every_export_is_named_in_the_manual(module_name: str, name: str) -> None:
    assert mentions(DOCS_CODE, name), (
        f"{module_name}.{name} appears in no code span or block of README.md or docs/: add it to the page "
        f"that covers it (docs/architecture.md maps the whole public surface)"
    )
