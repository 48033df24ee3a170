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
import json
import pkgutil
import re
import subprocess
import sys
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


def top_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """The statements that run at a module's top level, in order: those inside a top-level ``try`` (its
    body, as in ``try: from ._x import ...``) or ``if`` (both branches) included."""
    flat: list[ast.stmt] = []
    for node in body:
        if isinstance(node, ast.Try):
            flat.extend(top_level(node.body))
        elif isinstance(node, ast.If):
            flat.extend(top_level(node.body + node.orelse))
        else:
            flat.append(node)
    return flat


def defining_source(module_name: str, name: str) -> tuple[list[str], list[ast.stmt], int] | None:
    """Where `name` is assigned, following ``from .x import name as name`` chains from `module_name`:
    the defining module's lines, its top-level statements and the index of the assignment."""
    module = importlib.import_module(module_name)
    assert module.__file__ is not None
    source = Path(module.__file__).read_text(encoding="utf-8")
    body = top_level(ast.parse(source).body)
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


def constant_documented(module_name: str, name: str, obj: object, seen: frozenset[str] = frozenset()) -> bool:
    """Whether the constant or alias `name` of `module_name` is documented: where it is assigned, in the
    module's docstring, or, for a re-export of the same object under the same name by another public module
    (trading_ws.testing re-exports the simulators' credentials), there."""
    module = importlib.import_module(module_name)
    if has_attribute_doc(module_name, name):
        return True
    if mentions(" ".join(re.findall(r"`([^`]+)`", own_doc(module))), name):
        return True
    seen |= {module_name}
    return any(
        other not in seen
        and export == name
        and getattr(importlib.import_module(other), name) is obj
        and constant_documented(other, name, obj, seen)
        for other, export in EXPORTS
    )


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


# The extras of pyproject.toml: the top-level modules they bring, and the public modules that need them.
EXTRA_MODULES = ("rich", "hypercorn", "trustme")
NEEDS_AN_EXTRA = ("trading_ws.sim",)
CORE_MODULES = [m for m in PUBLIC_MODULES if not any(m == x or m.startswith(f"{x}.") for x in NEEDS_AN_EXTRA)]

# A core install (`pip install trading-ws`) in miniature: a child process whose import system says the
# extras' modules are not installed (the first finder on sys.meta_path refuses them as a missing
# distribution would), with "blocked" as its first argument; with "installed", they are left importable
# and the child only records whether anything loaded them. It imports the core public modules named on its
# command line, runs an application against FakeBroker, tries what needs an extra, and prints a JSON report.
CORE_CHILD = r"""
import contextlib, importlib, io, json, sys

EXTRAS = ("rich", "hypercorn", "trustme")
blocked, names = sys.argv[1] == "blocked", sys.argv[2:]


class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in EXTRAS:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


if blocked:
    sys.meta_path.insert(0, NotInstalled())


def loaded():
    return sorted(m for m in sys.modules if m.partition(".")[0] in EXTRAS or m.startswith("trading_ws.sim"))


report = {}
for name in names:
    importlib.import_module(name)
report["loaded_by_the_core"] = loaded()

import trio
import trio.testing
from trading_ws import Mode, Tick, open_market_data
from trading_ws.testing import FakeBroker


async def application():
    broker = FakeBroker(["NSE:INFY", "NSE:TCS"])
    async with open_market_data(broker) as md, md.subscribe(["NSE:INFY"], mode=Mode.LTP) as sub:
        broker.push(broker.tick("NSE:INFY", 1500.5), broker.tick("NSE:TCS", 3500.0))
        batch = await sub.receive_batch()
        return [(e.symbol, e.last_price) for e in batch if isinstance(e, Tick)]


report["ticks"] = trio.run(application, clock=trio.testing.MockClock(autojump_threshold=0))
report["loaded_by_fake_broker"] = loaded()

if blocked:
    try:
        import trading_ws.sim
    except ImportError as exc:
        report["import_sim"] = [type(exc).__name__, str(exc), exc.name]
    import trading_ws.testing
    try:
        trading_ws.testing.KiteSimulator
    except ImportError as exc:
        report["testing_simulator"] = [type(exc).__name__, str(exc)]
    from trading_ws.cli import main
    for argv in (["demo", "--duration", "1"], ["sim", "xts"]):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main(argv)
        report[" ".join(argv)] = [code, err.getvalue()]
print(json.dumps(report))
"""


def run_core_child(mode: str) -> dict[str, typing.Any]:
    child = subprocess.run(
        [sys.executable, "-c", CORE_CHILD, mode, *CORE_MODULES],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    report: dict[str, typing.Any] = json.loads(child.stdout)
    return report


def test_the_core_imports_nothing_from_the_extras() -> None:
    """With everything installed, importing every public module but the simulators (and running an
    application against FakeBroker) loads neither rich nor the simulators' servers: they cost an embedding
    application nothing until it asks for them."""
    assert set(CORE_MODULES) >= {
        "trading_ws",
        "trading_ws.brokers.kite",
        "trading_ws.brokers.xts",
        "trading_ws.cli",
        "trading_ws.testing",
    }
    report = run_core_child("installed")
    assert report == {
        "loaded_by_the_core": [],
        "ticks": [["NSE:INFY", 1500.5]],
        "loaded_by_fake_broker": [],
    }


def test_a_core_install_runs_and_says_which_extra_is_missing() -> None:
    """Where rich, hypercorn and trustme are not installed (``pip install trading-ws``): the library, its
    public modules and `FakeBroker` work; the simulators, their names in trading_ws.testing and the
    commands that run them each fail naming the [sim] extra (README.md, docs/getting-started.md)."""
    report = run_core_child("blocked")
    assert report["loaded_by_the_core"] == []
    assert report["ticks"] == [["NSE:INFY", 1500.5]]
    assert report["loaded_by_fake_broker"] == []
    kind, message, missing = report["import_sim"]
    assert kind == "ModuleNotFoundError"
    assert missing in EXTRA_MODULES
    assert message == (
        f"trading_ws.sim needs the [sim] extra ({missing} is not installed): pip install 'trading-ws[sim]' "
        "(or 'trading-ws[all]')"
    )
    kind, message = report["testing_simulator"]
    assert kind == "ImportError"
    assert "pip install 'trading-ws[sim]'" in message
    for command in ("demo", "sim xts"):
        code, err = report[f"{command} --duration 1" if command == "demo" else command]
        assert code == 2
        assert err == (
            f"trading-ws: error: 'trading-ws {command}' runs the simulators, which need the [sim] extra (not "
            "installed: hypercorn, trustme): pip install 'trading-ws[sim]' or 'trading-ws[all]' (from a "
            "checkout: pip install -e '.[all]')\n"
        )


def test_the_extras_are_declared_where_they_are_needed() -> None:
    """The core dependencies leave out what only the command's table and the simulators use."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]

    def names(requirements: list[str]) -> set[str]:
        return {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower() for r in requirements}

    core = names(project["dependencies"])
    extras = {extra: names(reqs) for extra, reqs in project["optional-dependencies"].items()}
    assert core >= {"trio", "trio-websocket", "attrs", "cattrs", "msgspec", "httpx"}
    assert not core & set(EXTRA_MODULES)
    assert extras["cli"] == {"rich"}
    assert extras["sim"] >= {"hypercorn", "trustme"}
    assert "trading-ws" in extras["all"]
    assert "trading-ws[cli,sim]" in project["optional-dependencies"]["all"]
    assert "trading-ws[cli,sim]" in project["optional-dependencies"]["test"]


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
        assert constant_documented(module_name, name, obj), (
            f"{module_name}.{name} (a {type(obj).__name__}) is documented nowhere: give it a #: comment or a "
            f"docstring after its assignment, or name it in the module docstring"
        )


DOCS_CODE = code_in_docs()


def logger_names() -> set[str]:
    """The names of the loggers the library logs under (``logging.getLogger("trading_ws.kite")``)."""
    found: set[str] = set()
    for path in (ROOT / "trading_ws").rglob("*.py"):
        found.update(re.findall(r"getLogger\(\"(trading_ws[\w.]*)\"\)", path.read_text(encoding="utf-8")))
    return found


def resolve(dotted: str) -> tuple[object, object, str]:
    """What `dotted` (``trading_ws.sim.KiteSimulator``) names, the module it is looked up in and its last
    part; raises ImportError or AttributeError when it names nothing."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError:
            continue
        obj: object = module
        owner: object = module
        last = parts[cut - 1]
        for part in parts[cut:]:
            owner, obj, last = obj, getattr(obj, part), part
        return obj, owner, last
    raise ImportError(dotted)


def test_every_dotted_name_in_the_manual_exists_and_public_ones_are_exported() -> None:
    """``trading_ws.x.Name`` in the manual's code (prose spans included, which mypy does not check) names
    something that exists; when every part is public, `Name` is in its module's ``__all__``, so a reader
    who follows the manual imports a supported name. Logger names are left aside."""
    loggers = logger_names()
    assert {"trading_ws", "trading_ws.kite", "trading_ws.xts"} <= loggers
    dotted = set(re.findall(r"(?<![\w.])trading_ws(?:\.\w+)+", DOCS_CODE)) - loggers
    assert {"trading_ws.sim.KiteSimulator", "trading_ws.brokers.kite.decode_frame"} <= dotted
    problems = []
    for name in sorted(dotted):
        try:
            obj, owner, last = resolve(name)
        except (ImportError, AttributeError) as exc:
            problems.append(f"{name}: names nothing ({exc!r})")
            continue
        public = not any(part.startswith("_") for part in name.split("."))
        exported = isinstance(owner, ModuleType) and last in getattr(owner, "__all__", ())
        if public and isinstance(owner, ModuleType) and not isinstance(obj, ModuleType) and not exported:
            problems.append(f"{name}: not in {owner.__name__}.__all__")
    assert problems == []


@pytest.mark.parametrize(("module_name", "name"), EXPORTS, ids=EXPORT_IDS)
def test_every_export_is_named_in_the_manual(module_name: str, name: str) -> None:
    assert mentions(DOCS_CODE, name), (
        f"{module_name}.{name} appears in no code span or block of README.md or docs/: add it to the page "
        f"that covers it (docs/architecture.md maps the whole public surface)"
    )
