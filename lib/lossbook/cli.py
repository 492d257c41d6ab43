"""`lossbook run|list|report|book|compare|sweep` — what the Makefile calls.

    lossbook run temperature_scaling --profile smoke seed=3 epochs=5
    lossbook list                            # the catalogue with each notebook's latest verdicts
    lossbook report
    lossbook book                            # the book site, site/index.html, from the store
    lossbook book --run --profile default    # every notebook first, then the site
    lossbook compare temperature_scaling --by seed
    lossbook sweep dpo_displacement --grid "beta=0.05,0.1,0.5 seed=0,1" --profile default   # Ray; see grid.py

`run` streams the notebook's own output (its prints, per-epoch lines, tqdm bars); `--cell-bar` shows papermill's
per-cell bar instead, `--quiet` neither. Exit codes: 0 finished, 1 the notebook failed (cell error, dead kernel),
2 bad input or an unusable MLflow store (one paragraph, before anything runs), 128 + the signal when interrupted
(130 Ctrl-C, 143 SIGTERM, 129 SIGHUP; the run is marked KILLED and its partial notebook logged).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import sys
import textwrap

from lossbook import params, runner, tracking


def _run(args: argparse.Namespace) -> int:
    try:  # validate before importing papermill and mlflow, so bad input fails in a fraction of a second
        overrides = params.parse_overrides(list(args.set or []) + list(args.overrides or []))
        params.resolve(args.notebook, args.profile, overrides)
        tracking.check_store()
    except (params.ParamsError, tracking.StoreError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    stream = not args.quiet and not getattr(args, "cell_bar", False)
    try:
        result = runner.run(args.notebook, args.profile, overrides, progress=not args.quiet and not stream,
                            log_output=stream or getattr(args, "log_output", False))
    except (params.ParamsError, tracking.StoreError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except runner.RunFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return 128 + (e.result.signal or signal.SIGINT) if e.result.status == "KILLED" else 1
    print(runner.summary(result))
    return 0


def plain(text: str) -> str:
    """Markdown to plain text for the terminal: links to their text, no emphasis or code marks."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"`([^`]*)`", r"\1", text)
    text = re.sub(r"(\*\*|__)(.+?)\1", r"\2", text)
    text = re.sub(r"(?<![\w*])\*(?=\S)([^*]+?)(?<=\S)\*(?![\w*])", r"\1", text)
    return re.sub(r"\s+", " ", text).strip()


def latest_verdicts() -> dict[str, str]:
    """notebook -> "2 reproduced, 1 inconclusive [default, run 1a2b3c4d]" of its latest counted run (the book's
    rule), else of its latest smoke run marked so; {} when the store does not exist yet or cannot be read."""
    from lossbook import report

    uri = tracking.tracking_uri()
    if uri.startswith("sqlite:///") and not os.path.exists(uri.removeprefix("sqlite:///").split("?")[0]):
        return {}
    try:
        tracking.check_store()
        shown = {e.name: e for e in report.entries()}
        smoke = report.latest_runs("smoke") if any(e.run is None for e in shown.values()) else {}
        client = tracking.configure()
        for name, e in shown.items():
            if e.run is None and name in smoke:
                shown[name] = report.Entry(e.notebook, smoke[name], report.run_claims(client, smoke[name].info.run_id))
    except Exception:  # noqa: BLE001 - the catalogue is still worth printing
        return {}
    return {name: f"{e.verdicts} [{e.profile}, run {e.run.info.run_id[:8]}]" for name, e in shown.items() if e.run is not None}


def _list(args: argparse.Namespace) -> int:
    books = params.discover()
    width = max(40, min(shutil.get_terminal_size((100, 24)).columns, 120))
    latest = latest_verdicts()
    for family in params.FAMILIES:
        names = [n for n, b in books.items() if b.family == family]
        print(f"\n{family}")
        if not names:
            print("  (no notebooks yet)")
        for n in names:
            b = books[n]
            print(f"  {n}")
            for label, text in (("claim", b.claim), ("paper", b.paper), ("latest", latest.get(n, "not run"))):
                if text:
                    print(textwrap.fill(plain(text), width, initial_indent=f"    {label}: ", subsequent_indent=" " * 11))
    return 0


def _report(args: argparse.Namespace) -> int:
    from lossbook import report, runner

    md, html = report.write(runner.runs_dir(), getattr(args, "profile", None))
    print(md.read_text())
    print(f"written: {md}\n         {html}")
    return 0


def _book(args: argparse.Namespace) -> int:
    """`book`: build the site from the store; `book --run`: run every notebook under --profile first."""
    from pathlib import Path

    rc = 0
    if args.run:
        for name in params.discover():
            ns = argparse.Namespace(notebook=name, profile=args.profile or "default", set=[], overrides=[], quiet=args.quiet)
            rc = _run(ns) or rc
            if rc >= 128:  # interrupted: stop the book here
                return rc
    try:
        tracking.check_store()
    except tracking.StoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from lossbook import report, site

    index = site.build(Path(args.out) if args.out else None, args.profile)
    print(f"book site: {index}  (open it in a browser, or `make book-serve`)")
    if not args.profile and not report.latest_runs() and (smoke := report.latest_runs("smoke")):
        print(f"note: no notebook has a finished run other than smoke, so every row says 'not run'; {len(smoke)} have "
              "smoke runs: `make book BOOK_PROFILE=smoke` (lossbook book --profile smoke) shows those.")
    return rc


def _compare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lossbook import compare, runner

    try:
        params.find_notebook(args.notebook)
        tracking.check_store()
        cmp = compare.compare(args.notebook, runs=args.runs or (), by=args.by, metrics=args.metric or None,
                              curves=args.curve or None, profile=args.profile, max_runs=args.max_runs,
                              include_smoke=args.smoke)
    except (params.ParamsError, tracking.StoreError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    md, png = cmp.write(Path(args.out) if args.out else runner.runs_dir() / "compare")
    print(md.read_text())
    print(f"written: {md}" + (f"\n         {png}" if png else ""))
    return 0


def _sweep(args: argparse.Namespace) -> int:
    """One `lossbook run` per grid point on Ray (`lossbook.grid`); exit 0 when every point finished or was skipped."""
    from lossbook import grid

    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # the sweep prints its own lines and links
    try:
        res = grid.sweep(args.notebook, args.profile, args.grid, list(args.set or []), workers=args.workers, cpus=args.cpus,
                         gpus=args.gpus, address=args.address, retries=args.retries, resume=not args.no_resume,
                         quiet=args.quiet)
    except (params.ParamsError, tracking.StoreError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", signal.SIGINT)
        print(f"sweep interrupted by {runner.SIGNAL_NAMES.get(signum, signum)}; the parent run is marked KILLED.", file=sys.stderr)
        return 128 + signum
    return 0 if res.ok else 1


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    p = argparse.ArgumentParser(prog="lossbook", description="Run and compare the lossbook notebooks.")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="execute one notebook under a profile as one MLflow run")
    r.add_argument("notebook")
    r.add_argument("overrides", nargs="*", help="key=value parameter overrides")
    r.add_argument("--profile", default="default")
    r.add_argument("--set", action="append", metavar="KEY=VALUE", help="parameter override (repeatable)")
    r.add_argument("--quiet", action="store_true", help="print nothing while the notebook runs")
    r.add_argument("--cell-bar", action="store_true",
                   help="show papermill's per-cell bar instead of the notebook's own output (the default)")
    r.add_argument("--log-output", action="store_true", help=argparse.SUPPRESS)  # the default now; kept for old scripts
    r.set_defaults(fn=_run)
    sub.add_parser("list", help="notebooks by family with their claim, paper and latest verdicts").set_defaults(fn=_list)
    rep = sub.add_parser("report", help="write runs/report.md and runs/report.html")
    rep.add_argument("--profile", default=None, help="show the latest run of this profile (default: any but smoke)")
    rep.set_defaults(fn=_report)
    b = sub.add_parser("book", help="build the book site (site/) from the store; --run runs every notebook first")
    b.add_argument("--profile", default=None,
                   help="show the latest run of this profile (default: the latest of any profile but smoke); with --run, "
                        "also the profile the notebooks run under (default: default)")
    b.add_argument("--run", action="store_true", help="run every notebook under --profile first")
    b.add_argument("--out", default=None, help="the site's directory (default: <repo>/site)")
    b.add_argument("--quiet", action="store_true")
    b.set_defaults(fn=_book)
    c = sub.add_parser("compare", help="claims, metrics, differing params and curves across runs of one notebook")
    c.add_argument("notebook")
    c.add_argument("--by", default="run", choices=["run", "seed", "commit", "param"], help="one column per run (default), "
                   "seed, git commit, or combination of the params that differ")
    c.add_argument("--runs", nargs="+", metavar="ID", help="exactly these runs (default: the latest FINISHED ones)")
    c.add_argument("--metric", action="append", help="a metric to tabulate (repeatable; default: all but claim/*, verdicts/*)")
    c.add_argument("--curve", action="append", help="a metric to draw over steps (repeatable; default: up to 4 with a history)")
    c.add_argument("--profile", default=None, help="only runs of this profile (default: any but smoke)")
    c.add_argument("--smoke", action="store_true", help="include smoke runs")
    c.add_argument("--max-runs", type=int, default=20, help="at most this many of the latest runs (default 20)")
    c.add_argument("--out", default=None, help="directory of compare-<notebook>.md/.png (default: runs/compare)")
    c.set_defaults(fn=_compare)
    s = sub.add_parser("sweep", help="one run per point of a parameter grid, as Ray tasks under a parent run")
    s.add_argument("notebook")
    s.add_argument("--grid", required=True, action="append", metavar='"K1=V1,V2 K2=V3,V4"',
                   help="axes of the cartesian grid (repeatable); values parsed like run's key=value")
    s.add_argument("--profile", default="default")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override shared by every point (repeatable)")
    s.add_argument("--workers", type=int, default=None,
                   help="points at once (default: all CPUs locally, no cap on a cluster; 0: one by one here, without Ray)")
    s.add_argument("--cpus", type=float, default=1.0, help="CPUs per point (also its OMP/MKL threads)")
    s.add_argument("--gpus", type=float, default=None, help="GPUs per point (default: 1 when its device is cuda, or auto on a GPU cluster)")
    s.add_argument("--address", default=None, help="an existing Ray cluster: auto, or ray://head:10001 (default: start one here)")
    s.add_argument("--retries", type=int, default=2, help="extra attempts for a point that fails or whose worker dies")
    s.add_argument("--no-resume", action="store_true", help="rerun points that already FINISHED at this commit")
    s.add_argument("--quiet", action="store_true", help="no per-point lines")
    s.set_defaults(fn=_sweep)
    args, extra = p.parse_known_args(argv)
    # `run x --profile smoke seed=3` (the Makefile's order): argparse leaves key=value tokens that follow an
    # option unparsed; they are overrides like the ones before it. Anything else is still an error.
    stray = [t for t in extra if t.startswith("-") or "=" not in t or args.cmd != "run"]
    if stray:
        p.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.overrides = [*(args.overrides or []), *extra]
    return _interruptible(args)


def _interruptible(args: argparse.Namespace) -> int:
    """Run the command; a signal before a run exists (imports, kernel start) is one line, not a traceback.

    Once a run exists the runner handles SIGINT/SIGTERM/SIGHUP itself (run KILLED, notebook logged).
    """
    def stop(signum: int, frame: object) -> None:
        raise runner.Interrupted(signum)

    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, stop)
    try:
        return args.fn(args)
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", signal.SIGINT)
        print(f"interrupted by {runner.SIGNAL_NAMES.get(signum, signum)} before a run was created; nothing was recorded.",
              file=sys.stderr)
        return 128 + signum


if __name__ == "__main__":
    raise SystemExit(main())
