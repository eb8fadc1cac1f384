"""The library's layers (ARCHITECTURE.md), read from the imports of every ``reprolib/**/*.py``:
a per-paper ``*_study`` module never imports another one, and no other module imports a study."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "reprolib"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports, at module level or inside functions; for
    ``from X import a`` both ``X`` and ``X.a`` (``a`` may be a submodule)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names if alias.name != "*")
    return {m for m in found if m == "reprolib" or m.startswith("reprolib.")}


MODULES = {_module_name(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def _is_study(module: str) -> bool:
    return module.rpartition(".")[2].endswith("_study")


STUDIES = sorted(m for m in MODULES if _is_study(m))


def test_the_reader_finds_the_study_modules_and_their_imports():
    assert {"reprolib.sid_study", "reprolib.genisp_study", "reprolib.pynet_study"} <= set(STUDIES)
    assert "reprolib.study" in MODULES["reprolib.sid_study"]  # `from . import ..., study`
    assert not _is_study("reprolib.study")


@pytest.mark.parametrize("module", STUDIES)
def test_a_study_module_imports_no_other_study(module):
    others = sorted(m for m in MODULES[module] if _is_study(m) and m != module)
    assert not others, f"{module} imports {others}: move what they share into a lower layer"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not _is_study(m)))
def test_no_library_module_imports_a_study(module):
    studies = sorted(m for m in MODULES[module] if _is_study(m))
    assert not studies, f"{module} imports {studies}: a lower layer must not depend on a study"


#: the layers of ARCHITECTURE.md, lowest first: a module imports only its own layer and lower ones
LAYERS = (
    ("reprolib.raw", "reprolib.published", "reprolib.train"),
    ("reprolib.synth", "reprolib.data"),
    ("reprolib.models", "reprolib.metrics", "reprolib.losses", "reprolib.detect",
     "reprolib.evaluate", "reprolib.efficiency", "reprolib.plots"),
    ("reprolib.study", "reprolib.report", "reprolib.__main__"),
)


def _layer(module: str) -> int:
    if _is_study(module):
        return len(LAYERS)
    for rank, members in enumerate(LAYERS):
        if any(module == m or module.startswith(m + ".") for m in members):
            return rank
    raise AssertionError(f"{module} is in no layer of tests/test_layers.py: add it (and to ARCHITECTURE.md)")


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_module_imports_only_its_own_and_lower_layers(module):
    if module == "reprolib":
        return
    higher = sorted(m for m in MODULES[module] if m != "reprolib" and _layer(m) > _layer(module))
    assert not higher, f"{module} (layer {_layer(module)}) imports the higher {higher}"
