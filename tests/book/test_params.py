"""Params: discovery, the parameters cell, profiles, and every bad-input case named in the spine issue."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lossbook import REPO_ROOT, params
from lossbook.params import ParamsError


def test_parameters_cell_reads_literals(fixture_root: Path) -> None:
    nb = params.find_notebook("trivial")
    d = params.parameters_cell(nb.path)
    assert d == {"mlflow_run_id": "", "profile": "interactive", "seed": 0, "steps": 3, "lr": 0.1, "fail_at": -1,
                 "mode": "ok", "seeds": [0, 1], "use_bias": True}
    assert (nb.family, nb.title, nb.claim) == ("calibration", "A trivial notebook for runner tests", "two plus two is four.")


def test_parameters_cell_rejects_derived_values(tmp_path: Path) -> None:
    p = tmp_path / "x.py"
    p.write_text('# %% tags=["parameters"]\na = 1\nb = a * 2\n\n# %%\nprint(b)\n')
    with pytest.raises(ParamsError, match="not a literal"):
        params.parameters_cell(p)
    p.write_text("# %%\na = 1\n")
    with pytest.raises(ParamsError, match="no cell tagged parameters"):
        params.parameters_cell(p)


def test_unknown_notebook_lists_close_matches_and_all_names(fixture_root: Path) -> None:
    with pytest.raises(ParamsError) as e:
        params.resolve("trivail")
    msg = str(e.value)
    assert "unknown notebook 'trivail'" in msg and "Did you mean trivial" in msg and "Notebooks: trivial" in msg


def test_unknown_profile(fixture_root: Path) -> None:
    with pytest.raises(ParamsError, match="unknown profile 'smok'.*valid profiles: default, full, smoke"):
        params.resolve("trivial", "smok")


def test_unknown_key_names_valid_keys(fixture_root: Path) -> None:
    with pytest.raises(ParamsError) as e:
        params.resolve("trivial", "default", {"step": 5})
    assert "unknown parameter 'step'" in str(e.value) and "Did you mean steps" in str(e.value)
    assert "Valid keys: fail_at, lr, mode, seed, seeds, steps, use_bias" in str(e.value)
    with pytest.raises(ParamsError, match="unknown parameter 'mlflow_run_id'"):
        params.resolve("trivial", "default", {"mlflow_run_id": "abc"})


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [("lr", "1e-3", 1e-3), ("lr", 1, 1.0), ("steps", 4.0, 4), ("steps", "7", 7), ("use_bias", "false", False),
     ("seeds", [3, "4"], [3, 4]), ("mode", "raise", "raise")],
)
def test_values_coerced_to_the_defaults_type(fixture_root: Path, key: str, value: object, expected: object) -> None:
    r = params.resolve("trivial", "default", {key: value})
    assert r.params[key] == expected and type(r.params[key]) is type(expected)
    assert r.injected[key] == expected


@pytest.mark.parametrize(("key", "value"), [("steps", "ten"), ("steps", 2.5), ("lr", "fast"), ("use_bias", 1), ("seeds", 3), ("mode", 3)])
def test_wrong_type_is_rejected(fixture_root: Path, key: str, value: object) -> None:
    with pytest.raises(ParamsError, match=f"parameter '{key}' from PARAMS has value"):
        params.resolve("trivial", "default", {key: value})
    with pytest.raises(ParamsError, match="is an int; pass an int"):  # not "a int"
        params.resolve("trivial", "default", {"steps": "ten"})


def test_profile_values_apply_and_overrides_win(fixture_root: Path) -> None:
    r = params.resolve("trivial", "smoke", {"seed": 3})
    assert r.params["steps"] == 2 and r.params["seed"] == 3 and r.params["profile"] == "smoke"
    assert r.injected == {"steps": 2, "seed": 3, "profile": "smoke"}


def _copy_fixture(tmp_path: Path) -> Path:
    root = tmp_path / "book"
    shutil.copytree(Path(__file__).parents[1] / "fixtures", root)
    return root


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    root = _copy_fixture(tmp_path)
    (root / "params" / "trivial.yaml").write_text("smoke:\n  steps: 2\n default: {\n")
    with pytest.raises(ParamsError, match=r"malformed YAML in .*trivial.yaml line 3"):
        params.resolve("trivial", "smoke", root=root)


def test_missing_params_file_falls_back_to_defaults_only_for_default(tmp_path: Path) -> None:
    """Issue 11.4: without params/<name>.yaml, `default` runs the parameters cell; any other profile is an error
    (it used to run the full default experiment tagged smoke)."""
    root = _copy_fixture(tmp_path)
    (root / "params" / "trivial.yaml").unlink()
    r = params.resolve("trivial", "default", root=root)
    assert not r.params_file_found and r.params["steps"] == 3
    for profile in ("smoke", "full"):
        with pytest.raises(ParamsError, match=rf"trivial.yaml does not exist, so notebook trivial has no '{profile}' profile"):
            params.resolve("trivial", profile, root=root)
    env = {**os.environ, "LOSSBOOK_ROOT": str(root)}
    p = subprocess.run([sys.executable, "-m", "lossbook.cli", "run", "trivial", "--profile", "smoke"],
                       capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode == 2 and "has no 'smoke' profile" in p.stderr and "PROFILE=default" in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_declared_ranges_are_parsed_from_the_parameters_comments(fixture_root: Path) -> None:
    ranges = params.parameter_ranges(params.find_notebook("trivial").path)
    assert {k: r.text for k, r in ranges.items()} == {"seed": "in [0, inf)", "steps": "in [0, inf)", "lr": "in [0, 1]",
                                                      "seeds": "in [0, inf)"}
    R = params.Range.parse
    assert R("passes over the data; in [1, inf)") == params.Range(low=1, high_open=True, text="in [1, inf)")
    assert 0 in R("in [0, 1)") and 1 not in R("in [0, 1)") and 0 not in R("in (0, 1]") and 1 in R("in (0, 1]")
    assert 2 in R("< 3") and 3 not in R("< 3") and 1e-4 in R("> 0") and 0 not in R("> 0") and 1e9 in R("in [1, inf)")
    assert R("claim 1: displaces when the drop > this") is None and R("x > 1") is None and R("") is None
    with pytest.raises(ParamsError, match=r"write `in \[1, inf\)`"):  # papermill cannot parse a line with two '='
        R("epochs; >= 1")


@pytest.mark.parametrize(("key", "value", "rng"), [("steps", -3, "in [0, inf)"), ("lr", 2.0, "in [0, 1]"), ("lr", -0.5, "in [0, 1]"),
                                                   ("seeds", [0, -1], "in [0, inf)"), ("seed", -1, "in [0, inf)")])
def test_out_of_range_values_are_refused_naming_key_value_and_range(fixture_root: Path, key: str, value: object, rng: str) -> None:
    """Issue 11.5: `epochs=-3`, `batch_size=0`, a probability of 2 used to fail a minute later inside the notebook."""
    with pytest.raises(ParamsError) as e:
        params.resolve("trivial", "default", {key: value})
    msg = str(e.value)
    assert f"parameter {key}={value!r}" in msg and "from PARAMS is out of range" in msg and f"declares {key} {rng}" in msg
    assert params.resolve("trivial", "default", {"steps": 0, "lr": 1, "seeds": [5]}).params["lr"] == 1.0  # the edges are in


def test_out_of_range_profile_value_and_default_are_refused(tmp_path: Path) -> None:
    root = _copy_fixture(tmp_path)
    (root / "params" / "trivial.yaml").write_text("smoke:\n  lr: 1.5\n")
    with pytest.raises(ParamsError, match=r"lr=1.5 from trivial.yaml:smoke is out of range"):
        params.resolve("trivial", "smoke", root=root)
    nb = root / "notebooks" / "calibration" / "trivial.py"
    nb.write_text(nb.read_text().replace("steps = 3  # logged loss steps; in [0, inf)", "steps = 3  # logged loss steps; in [5, 9]"))
    with pytest.raises(ParamsError, match=r"steps=3 from the parameters cell of .*trivial.py is out of range"):
        params.resolve("trivial", "default", root=root)


def test_parse_overrides() -> None:
    assert params.parse_overrides(["seed=3", "lr=1e-3", "seeds=[0, 1]", "name=abc"]) == {
        "seed": 3, "lr": "1e-3", "seeds": [0, 1], "name": "abc"}
    with pytest.raises(ParamsError, match="key=value"):
        params.parse_overrides(["seed"])


def test_cli_bad_input_exits_nonzero_before_anything_runs(fixture_root: Path, isolated_store: Path) -> None:
    before = set((isolated_store / "runs").rglob("*")) if (isolated_store / "runs").exists() else set()
    for args, needle in [
        (["run", "nope"], "unknown notebook 'nope'"),
        (["run", "trivial", "--profile", "huge"], "unknown profile 'huge'"),
        (["run", "trivial", "stepz=3"], "unknown parameter 'stepz'"),
        (["run", "trivial", 'steps="ten"'], "parameter 'steps'"),
        (["run", "trivial", "--profile", "smoke", "stepz=3"], "unknown parameter 'stepz'"),  # overrides after an option
        (["run", "trivial", "--profile", "smoke", "--bogus"], "unrecognized arguments: --bogus"),
        (["run", "trivial", "--profile", "smoke", "steps=-3"], "parameter steps=-3 from PARAMS is out of range"),
        (["run", "trivial", "lr=2"], "parameter lr=2.0 from PARAMS is out of range: the notebook declares lr in [0, 1]"),
    ]:
        p = subprocess.run([sys.executable, "-m", "lossbook.cli", *args], capture_output=True, text=True, timeout=60)
        assert p.returncode == 2, p.stderr
        assert needle in p.stderr
        assert "Traceback" not in p.stderr
    after = set((isolated_store / "runs").rglob("*")) if (isolated_store / "runs").exists() else set()
    assert after == before


def test_every_repo_params_file_validates() -> None:
    """Each params/<name>.yaml in the repo belongs to a notebook and every profile's keys and types check."""
    books = params.discover(REPO_ROOT)
    for path in sorted((REPO_ROOT / "params").glob("*.yaml")):
        assert path.stem in books, f"{path} has no notebook notebooks/*/{path.stem}.py"
        profiles, _ = params.load_profiles(books[path.stem])
        for profile in profiles:
            params.resolve(path.stem, profile, root=REPO_ROOT)
