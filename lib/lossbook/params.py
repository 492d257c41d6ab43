"""Notebooks and their parameters: discovery, the `parameters` cell, params/<name>.yaml profiles, checks.

A notebook is `notebooks/<family>/<name>.py` (jupytext py:percent). Its cell tagged `parameters` holds
plain literal assignments; those are the baseline (the `default` profile). `params/<name>.yaml` maps
profile names to the values that differ. Every key and value is checked before anything runs.

We read the parameters cell with `ast.literal_eval` rather than `papermill.inspect_notebook`: it gives the
actual default values (so types are exact, `[0, 1]` is a list of ints), and it needs no conversion.
"""

from __future__ import annotations

import ast
import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lossbook import REPO_ROOT

FAMILIES = ("alignment", "distillation", "scaling", "calibration")
PROFILES = ("smoke", "default", "full")
RUNNER_PARAMS = ("mlflow_run_id", "profile")
"""Parameters every notebook declares and the runner injects; users do not set them."""


def book_root() -> Path:
    """Where notebooks/ and params/ live: `LOSSBOOK_ROOT` if set (tests point it at fixtures), else the repo."""
    return Path(os.environ.get("LOSSBOOK_ROOT") or REPO_ROOT)


class ParamsError(ValueError):
    """Bad input to a run: unknown notebook, profile or key, wrong type, malformed YAML."""


@dataclass(frozen=True)
class Notebook:
    name: str
    family: str
    path: Path
    title: str
    claim: str
    paper: str

    @property
    def params_path(self) -> Path:
        return self.path.parents[2] / "params" / f"{self.name}.yaml"


def _header(text: str) -> tuple[str, str, str]:
    """Title, claim and paper from the notebook's first markdown cell (`# # Title`, `**Claim:**`, `**Paper:**`)."""
    title = claim = paper = ""
    for line in text.splitlines():
        body = line.removeprefix("#").strip()
        if not title and body.startswith("# "):
            title = body[2:].strip()
        m = re.match(r"\*\*(Claim|Paper)s?:\*\*\s*(.*)", body)
        if m and m.group(1) == "Claim" and not claim:
            claim = m.group(2).strip()
        if m and m.group(1) == "Paper" and not paper:
            paper = m.group(2).strip()
        if title and claim and paper:
            break
    return title, claim, paper


def discover(root: Path | None = None) -> dict[str, Notebook]:
    """All notebooks under `root/notebooks/<family>/*.py`, by name (names are unique across families)."""
    root = root or book_root()
    found: dict[str, Notebook] = {}
    for family in FAMILIES:
        for path in sorted((root / "notebooks" / family).glob("*.py")):
            name = path.stem
            if name in found:
                raise ParamsError(f"notebook name {name!r} is used twice: {found[name].path} and {path}; names must be unique.")
            found[name] = Notebook(name, family, path, *_header(path.read_text()))
    return found


def find_notebook(name: str, root: Path | None = None) -> Notebook:
    """The notebook called `name`, or ParamsError listing close matches and every valid name."""
    books = discover(root)
    if name in books:
        return books[name]
    close = difflib.get_close_matches(name, books, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ParamsError(
        f"unknown notebook {name!r}.{hint} Notebooks: {', '.join(sorted(books)) or '(none found)'} "
        f"(see `make list`)."
    )


def parameters_cell(path: Path) -> dict[str, Any]:
    """The defaults assigned in the notebook's `parameters` cell, as python values.

    Raises ParamsError if there is no such cell or it holds anything but `name = <literal>`.
    """
    text = path.read_text()
    m = re.search(r"^# %%[^\n]*tags=\[[^\]\n]*\"parameters\"[^\]\n]*\][^\n]*\n(.*?)(?=^# %%|\Z)", text, re.M | re.S)
    if not m:
        raise ParamsError(f"{path} has no cell tagged parameters (write `# %% tags=[\"parameters\"]`).")
    out: dict[str, Any] = {}
    for node in ast.parse(m.group(1)).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            raise ParamsError(f"{path}: the parameters cell must hold plain `name = literal` lines, got line {node.lineno}.")
        try:
            out[node.targets[0].id] = ast.literal_eval(node.value)
        except ValueError as e:
            raise ParamsError(
                f"{path}: parameter {node.targets[0].id!r} is not a literal; derived values go in the next cell."
            ) from e
    return out


def load_profiles(nb: Notebook) -> tuple[dict[str, dict[str, Any]], bool]:
    """The params file's profiles and whether the file exists (missing file: every profile is empty)."""
    p = nb.params_path
    if not p.exists():
        return {}, False
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ParamsError(f"malformed YAML in {p}{where}: {getattr(e, 'problem', e)}") from e
    if not isinstance(data, dict) or any(not isinstance(v, dict | None) for v in data.values()):
        raise ParamsError(f"{p} must map profile names (smoke, default, full) to mappings of parameters.")
    return {k: dict(v or {}) for k, v in data.items()}, True


def coerce(key: str, value: Any, default: Any, source: str) -> Any:
    """Check `value` against the type of `default`, accepting numbers written either way.

    int where float is expected is widened; a string like "1e-3" (YAML 1.1 reads that as a string)
    is parsed as a number where the default is a number. Lists are checked element-wise.
    """
    def bad() -> ParamsError:
        return ParamsError(
            f"parameter {key!r} from {source} has value {value!r} of type {type(value).__name__}, "
            f"but the notebook's default {default!r} is a {type(default).__name__}; pass a {type(default).__name__}."
        )

    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "false"}:
            return value.lower() == "true"
        raise bad()
    if isinstance(default, int | float):
        if isinstance(value, str):
            try:
                value = float(value) if isinstance(default, float) else int(value)
            except ValueError:
                raise bad() from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad()
        if isinstance(default, float):
            return float(value)
        if isinstance(value, float):
            if not value.is_integer():
                raise bad()
            return int(value)
        return value
    if isinstance(default, list | tuple):
        if not isinstance(value, list | tuple):
            raise bad()
        if default:
            return [coerce(f"{key}[{i}]", v, default[0], source) for i, v in enumerate(value)]
        return list(value)
    if isinstance(default, dict):
        if not isinstance(value, dict):
            raise bad()
        return value
    if isinstance(default, str):
        if not isinstance(value, str):
            raise bad()
        return value
    return value


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`["seed=3", "lr=1e-3", "seeds=[0,1]"]` -> dict; values parsed as YAML, then as numbers."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ParamsError(f"override {item!r} is not of the form key=value (e.g. PARAMS=\"seed=3 epochs=5\").")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = yaml.safe_load(v) if v.strip() else ""
        except yaml.YAMLError:
            out[k.strip()] = v
    return out


@dataclass(frozen=True)
class Resolved:
    notebook: Notebook
    profile: str
    params: dict[str, Any]
    """The full parameter set the notebook runs with (defaults, profile, overrides)."""
    injected: dict[str, Any]
    """Only the values that differ from the notebook's defaults, as papermill injects them."""
    params_file_found: bool


def resolve(name: str, profile: str = "default", overrides: dict[str, Any] | None = None, root: Path | None = None) -> Resolved:
    """Find the notebook, load its profile, apply overrides, and check every key and type."""
    nb = find_notebook(name, root)
    defaults = parameters_cell(nb.path)
    missing = [k for k in RUNNER_PARAMS if k not in defaults]
    if missing:
        raise ParamsError(f"{nb.path}: the parameters cell must declare {', '.join(missing)} (the runner injects them).")
    profiles, found = load_profiles(nb)
    if profile not in PROFILES and profile not in profiles:
        raise ParamsError(
            f"unknown profile {profile!r} for {name}; valid profiles: {', '.join(sorted(set(PROFILES) | set(profiles)))}."
        )
    if found and profile not in profiles and profile != "default":
        raise ParamsError(f"{nb.params_path} has no {profile!r} profile; it has: {', '.join(profiles) or '(none)'}.")
    valid = sorted(k for k in defaults if k not in RUNNER_PARAMS)
    values = dict(defaults)
    for source, layer in ((f"{nb.params_path.name}:{profile}", profiles.get(profile, {})), ("PARAMS", overrides or {})):
        for k, v in layer.items():
            if k not in defaults or k in RUNNER_PARAMS:
                close = difflib.get_close_matches(k, valid, n=3)
                hint = f" Did you mean {', '.join(close)}?" if close else ""
                raise ParamsError(f"unknown parameter {k!r} in {source} for notebook {name}.{hint} Valid keys: {', '.join(valid)}.")
            values[k] = coerce(k, v, defaults[k], source)
    values["profile"] = profile
    injected = {k: v for k, v in values.items() if k not in defaults or defaults[k] != v}
    return Resolved(nb, profile, values, injected, found)
