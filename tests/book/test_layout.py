"""The house rules of DESIGN.md, read from the source (ast): the import structure and the notebook contract.

Layers, bottom to top: machinery core (params, tracking, cache, repro, stats, registry, plotting, claims,
replicate) -> engine (data, models -> optim -> train) -> families (alignment, distillation, calibration,
scaling); the front end (cli, runner, report, site, compare) sits on the machinery core. No module imports one above it,
the import graph has no cycle, and a family uses another family only through the public modules
allowlisted here (never a trainer or a world). Notebooks hold prose, parameters and calls: no def longer
than 5 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from lossbook import REPO_ROOT

LIB = REPO_ROOT / "lib" / "lossbook"
FAMILIES = ("alignment", "distillation", "calibration", "scaling")
ENGINE_ORDER = {"data": 0, "models": 0, "optim": 1, "train": 2}
FRONT = ("cli", "runner", "report", "site", "compare")
CROSS_FAMILY_ALLOWED: set[tuple[str, str]] = set()
"""(importing family, imported module) pairs allowed across families, e.g. ("distillation", "calibration.metrics")."""
MAX_NOTEBOOK_DEF_LINES = 5


def module_name(path: Path) -> str:
    rel = path.relative_to(LIB.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _exists(mod: str) -> bool:
    p = LIB.parent.joinpath(*mod.split("."))
    return p.with_suffix(".py").exists() or (p / "__init__.py").exists()


def imports_of(path: Path) -> set[str]:
    """Every lossbook module `path` imports, at any depth of the file (lazy imports count)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("lossbook")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lossbook"):
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names if _exists(f"{node.module}.{a.name}")}
    return {m for m in out if m != "lossbook"}


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) - {module_name(p)} for p in sorted(LIB.rglob("*.py"))}


def layer(mod: str) -> tuple[str, str]:
    """(kind, top-level package) of a module: kind in machinery / front / engine / family."""
    top = mod.split(".")[1] if mod.count(".") else ""
    if top in FAMILIES:
        return "family", top
    if top in ENGINE_ORDER:
        return "engine", top
    return ("front" if top in FRONT else "machinery"), top


def violation(src: str, dst: str) -> str | None:
    """Why `src` importing `dst` breaks the layering (None when it is allowed)."""
    (ks, ts), (kd, td) = layer(src), layer(dst)
    rank = {"machinery": 0, "engine": 1, "family": 2}
    if ks == "front":
        return None if kd in ("machinery", "front") else f"the front end imports the {kd} ({dst})"
    if kd == "front":
        return f"{src} imports the front end ({dst})"
    if rank[kd] > rank[ks]:
        return f"upward import: {ks} {src} -> {kd} {dst}"
    if ks == kd == "engine" and ENGINE_ORDER[td] > ENGINE_ORDER[ts]:
        return f"upward import inside the engine: {src} -> {dst}"
    if ks == kd == "family" and ts != td and (ts, dst.removeprefix("lossbook.")) not in CROSS_FAMILY_ALLOWED:
        return f"cross-family import off the allowlist: {src} -> {dst}"
    return None


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    """A cycle in the module graph (a package imports its __init__ implicitly, so packages count as nodes)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(g.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)):
                return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(g):
        if n not in state and (c := visit(n)):
            return c
    return None


def test_layout_matches_design() -> None:
    for d in ("losses", "metrics"):
        assert not (LIB / d).exists(), f"lib/lossbook/{d}/ must not exist: v2 keeps family code in lib/lossbook/<family>/"
    for fam in FAMILIES:
        assert (LIB / fam / "__init__.py").exists(), fam
    for pkg in ENGINE_ORDER:
        assert (LIB / pkg / "__init__.py").exists(), pkg


def test_no_import_cycle() -> None:
    assert find_cycle(graph()) is None, f"import cycle: {' -> '.join(find_cycle(graph()) or [])}"


def test_no_upward_or_cross_family_import() -> None:
    bad = sorted(v for src, dsts in graph().items() for dst in dsts if (v := violation(src, dst)))
    assert not bad, "\n".join(bad)


def test_nothing_imports_a_notebook() -> None:
    for p in LIB.rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom | ast.Import):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                assert not any(n.startswith("notebooks") for n in names), p


@pytest.mark.parametrize(
    "src, dst, why",
    [
        ("lossbook.train.lm", "lossbook.alignment.world", "upward"),
        ("lossbook.data.classification", "lossbook.train.lm", "inside the engine"),
        ("lossbook.stats", "lossbook.train.loop", "upward"),
        ("lossbook.distillation.train", "lossbook.calibration.posthoc", "cross-family"),
        ("lossbook.runner", "lossbook.alignment.sft", "front end"),
    ],
)
def test_the_checker_catches_each_kind_of_violation(src: str, dst: str, why: str) -> None:
    assert why in (violation(src, dst) or "")
    assert violation("lossbook.alignment.sft", "lossbook.train.lm") is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def long_defs(source: str) -> list[str]:
    """Functions (any depth) longer than MAX_NOTEBOOK_DEF_LINES lines, as 'name (n lines)'."""
    out = []
    for n in ast.walk(ast.parse(source)):
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and (k := n.end_lineno - n.lineno + 1) > MAX_NOTEBOOK_DEF_LINES:
            out.append(f"{n.name} ({k} lines)")
    return out


def test_notebooks_hold_no_long_functions() -> None:
    bad = {str(p.relative_to(REPO_ROOT)): d for p in sorted((REPO_ROOT / "notebooks").glob("*/*.py")) if (d := long_defs(p.read_text()))}
    assert not bad, f"move these into the family package: {bad}"
    assert long_defs("def f():\n    a = 1\n    b = 2\n    c = 3\n    d = 4\n    return a\n") == ["f (6 lines)"]


def seed_name_problem(name: str, value: object) -> str | None:
    """The book's seed names: `seed` / `<thing>_seed` hold one int, `seeds` / `<thing>_seeds` a list, and a
    count of seeds is `n_<thing>_seeds`. Returns what is wrong with (name, value), or None."""
    if "seed" not in name:
        return None
    if isinstance(value, bool) or not isinstance(value, int | list):
        return f"{name} = {value!r}: a seed parameter holds an int or a list of ints"
    if isinstance(value, list):
        return None if name.endswith("seeds") and not name.startswith("n_") else f"{name} is a list: call it <thing>_seeds"
    if name.startswith("n_"):
        return None if name.endswith("_seeds") else f"{name} is a count of seeds: call it n_<thing>_seeds"
    return None if name == "seed" or name.endswith("_seed") else f"{name} holds one seed: call it <thing>_seed (a count is n_<thing>_seeds)"


def test_seed_parameters_follow_one_convention() -> None:
    from lossbook import params

    bad = []
    for name, nb in params.discover(REPO_ROOT).items():
        for key, value in params.parameters_cell(nb.path).items():
            if problem := seed_name_problem(key, value):
                bad.append(f"{name}: {problem}")
    assert not bad, "\n".join(bad)
    assert seed_name_problem("lr_sensitivity_seeds", 5) and seed_name_problem("n_seeds", [1]) and seed_name_problem("worlds_seed", [1])
    assert seed_name_problem("n_prompt_seeds", 10) is None and seed_name_problem("world_seed", 0) is None
