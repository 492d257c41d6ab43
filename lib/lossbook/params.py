"""Notebooks and their parameters: discovery, the `parameters` cell, params/<name>.yaml profiles, checks.

A notebook is `notebooks/<family>/<name>.py` (jupytext py:percent). Its cell tagged `parameters` holds
plain literal assignments; those are the baseline (the `default` profile). `params/<name>.yaml` maps
profile names to the values that differ. Every key and value is checked before anything runs.

We read the parameters cell with `ast.literal_eval` rather than `papermill.inspect_notebook`: it gives the
actual default values (so types are exact, `[0, 1]` is a list of ints), and it needs no conversion.

Ranges: a numeric parameter may declare the values it accepts at the end of its line's comment, as the
comment's last `;`-separated clause (or the whole comment):

    epochs = 80  # passes over the data; in [1, inf)
    label_smoothing = 0.1  # ε of the smoothed targets; in [0, 1)
    lr = 3.0e-3  # Adam learning rate; > 0

`in [a, b]` with `[`/`]` closed and `(`/`)` open ends (`inf`, `-inf` allowed), or `> a`, `< b`. No `>=`/`<=`:
papermill refuses to parse a parameter line holding a second `=` (it warns and forgets the parameter), so
those are refused with the spelling to use. For a list the range applies to every element. A value out of
range (from a profile or PARAMS) is refused before anything runs, naming the key, the value and the range;
a default out of its own range is a notebook bug, refused too.
"""

from __future__ import annotations

import ast
import difflib
import io
import math
import os
import re
import tokenize
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


def _cell_source(path: Path) -> str:
    text = path.read_text()
    m = re.search(r"^# %%[^\n]*tags=\[[^\]\n]*\"parameters\"[^\]\n]*\][^\n]*\n(.*?)(?=^# %%|\Z)", text, re.M | re.S)
    if not m:
        raise ParamsError(f"{path} has no cell tagged parameters (write `# %% tags=[\"parameters\"]`).")
    return m.group(1)


_NUM = r"[-+]?(?:inf|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
_BOUND = re.compile(rf"(?:^|;)\s*(?P<op>>=|<=|>|<)\s*(?P<a>{_NUM})\s*$")
_INTERVAL = re.compile(rf"(?:^|;)\s*in\s*(?P<lo>[\[(])\s*(?P<a>{_NUM})\s*,\s*(?P<b>{_NUM})\s*(?P<hi>[\])])\s*$")


@dataclass(frozen=True)
class Range:
    """The values a numeric parameter accepts, as declared in its comment (`>= 1`, `in [0, 1)`, ...)."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    text: str = ""

    def __contains__(self, v: float) -> bool:
        above = v > self.low if self.low_open else v >= self.low
        below = v < self.high if self.high_open else v <= self.high
        return above and below

    @classmethod
    def parse(cls, comment: str) -> Range | None:
        """The range at the end of a parameter's comment (text after `#`), or None if it declares none.

        Raises ParamsError for `>= a` / `<= b` (see the module docstring for why)."""
        comment = comment.strip()
        if m := _BOUND.search(comment):
            a, op = float(m["a"]), m["op"]
            if op in (">=", "<="):
                hint = f"in [{m['a']}, inf)" if op == ">=" else f"in (-inf, {m['a']}]"
                raise ParamsError(f"range `{op} {m['a']}` in a parameters-cell comment: write `{hint}` (papermill cannot parse "
                                  f"a parameter line holding a second '=').")
            return cls(low=a, low_open=True, text=f"> {m['a']}") if op == ">" else cls(high=a, high_open=True, text=f"< {m['a']}")
        if m := _INTERVAL.search(comment):
            return cls(float(m["a"]), float(m["b"]), m["lo"] == "(", m["hi"] == ")", f"in {m['lo']}{m['a']}, {m['b']}{m['hi']}")
        return None


def parameter_ranges(path: Path) -> dict[str, Range]:
    """The ranges declared in the comments of the `parameters` cell, by parameter name."""
    src = _cell_source(path)
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string[1:]
    out: dict[str, Range] = {}
    for node in ast.parse(src).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            line = next((comments[i] for i in range(node.end_lineno or node.lineno, node.lineno - 1, -1) if i in comments), "")
            r = Range.parse(line)
            if r is not None:
                out[node.targets[0].id] = r
    return out


def check_range(key: str, value: Any, rng: Range, source: str) -> None:
    """ParamsError naming the key, the value and the range unless every number in `value` lies in `rng`."""
    items = value if isinstance(value, list | tuple) else [value]
    for v in items:
        if isinstance(v, int | float) and not isinstance(v, bool) and v not in rng:
            which = f"{key}={value!r}" if v is value else f"{key}={value!r} (element {v!r})"
            raise ParamsError(f"parameter {which} from {source} is out of range: the notebook declares {key} {rng.text}.")


def parameters_cell(path: Path) -> dict[str, Any]:
    """The defaults assigned in the notebook's `parameters` cell, as python values.

    Raises ParamsError if there is no such cell or it holds anything but `name = <literal>`.
    """
    out: dict[str, Any] = {}
    for node in ast.parse(_cell_source(path)).body:
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


def _a(noun: str) -> str:
    """"a float", "an int"."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def coerce(key: str, value: Any, default: Any, source: str) -> Any:
    """Check `value` against the type of `default`, accepting numbers written either way.

    int where float is expected is widened; a string like "1e-3" (YAML 1.1 reads that as a string)
    is parsed as a number where the default is a number. Lists are checked element-wise.
    """
    def bad() -> ParamsError:
        return ParamsError(
            f"parameter {key!r} from {source} has value {value!r} of type {type(value).__name__}, "
            f"but the notebook's default {default!r} is {_a(type(default).__name__)}; pass {_a(type(default).__name__)}."
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
    if not found and profile != "default":
        raise ParamsError(
            f"{nb.params_path} does not exist, so notebook {name} has no {profile!r} profile (only `default`, the values "
            f"of its parameters cell). Create the file with a `{profile}:` section, or run with PROFILE=default."
        )
    if profile not in PROFILES and profile not in profiles:
        raise ParamsError(
            f"unknown profile {profile!r} for {name}; valid profiles: {', '.join(sorted(set(PROFILES) | set(profiles)))}."
        )
    if found and profile not in profiles and profile != "default":
        raise ParamsError(f"{nb.params_path} has no {profile!r} profile; it has: {', '.join(profiles) or '(none)'}.")
    valid = sorted(k for k in defaults if k not in RUNNER_PARAMS)
    ranges = parameter_ranges(nb.path)
    for k, rng in ranges.items():
        check_range(k, defaults[k], rng, f"the parameters cell of {nb.path}")
    values = dict(defaults)
    for source, layer in ((f"{nb.params_path.name}:{profile}", profiles.get(profile, {})), ("PARAMS", overrides or {})):
        for k, v in layer.items():
            if k not in defaults or k in RUNNER_PARAMS:
                close = difflib.get_close_matches(k, valid, n=3)
                hint = f" Did you mean {', '.join(close)}?" if close else ""
                raise ParamsError(f"unknown parameter {k!r} in {source} for notebook {name}.{hint} Valid keys: {', '.join(valid)}.")
            values[k] = coerce(k, v, defaults[k], source)
            if k in ranges:
                check_range(k, values[k], ranges[k], source)
    values["profile"] = profile
    injected = {k: v for k, v in values.items() if k not in defaults or defaults[k] != v}
    return Resolved(nb, profile, values, injected, found)
