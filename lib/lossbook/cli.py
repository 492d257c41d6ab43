"""`lossbook run|list|report|book|sweep` — what the Makefile calls.

    lossbook run temperature_scaling --profile smoke seed=3 epochs=5
    lossbook list
    lossbook report
    lossbook book --profile default          # every notebook, then the report
    lossbook sweep dpo_displacement --grid beta=0.05,0.1,0.5 --profile default

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


def _list(args: argparse.Namespace) -> int:
    books = params.discover()
    width = max(40, min(shutil.get_terminal_size((100, 24)).columns, 120))
    for family in params.FAMILIES:
        names = [n for n, b in books.items() if b.family == family]
        print(f"\n{family}")
        if not names:
            print("  (no notebooks yet)")
        for n in names:
            b = books[n]
            print(f"  {n}")
            for label, text in (("claim", b.claim), ("paper", b.paper)):
                if text:
                    print(textwrap.fill(plain(text), width, initial_indent=f"    {label}: ", subsequent_indent=" " * 11))
    return 0


def _report(args: argparse.Namespace) -> int:
    from lossbook import report, runner

    md, html = report.write(runner.runs_dir())
    print(md.read_text())
    print(f"written: {md}\n         {html}")
    return 0


def _book(args: argparse.Namespace) -> int:
    rc = 0
    for name in params.discover():
        ns = argparse.Namespace(notebook=name, profile=args.profile, set=[], overrides=[], quiet=args.quiet)
        rc = _run(ns) or rc
        if rc >= 128:  # interrupted: stop the book here
            return rc
    _report(args)
    return rc


def _sweep(args: argparse.Namespace) -> int:
    key, _, values = args.grid.partition("=")
    if not values:
        print("error: --grid must look like key=v1,v2,v3", file=sys.stderr)
        return 2
    rc = 0
    for v in values.split(","):
        ns = argparse.Namespace(notebook=args.notebook, profile=args.profile, set=[*(args.set or []), f"{key}={v}"],
                                overrides=[], quiet=args.quiet)
        rc = _run(ns) or rc
        if rc >= 128:  # interrupted: stop the sweep here
            return rc
    return rc


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
    sub.add_parser("list", help="notebooks by family with their claim and paper").set_defaults(fn=_list)
    sub.add_parser("report", help="write runs/report.md and runs/report.html").set_defaults(fn=_report)
    b = sub.add_parser("book", help="run every notebook, then write the report")
    b.add_argument("--profile", default="default")
    b.add_argument("--quiet", action="store_true")
    b.set_defaults(fn=_book)
    s = sub.add_parser("sweep", help="run one notebook once per value of one parameter")
    s.add_argument("notebook")
    s.add_argument("--grid", required=True, metavar="KEY=V1,V2")
    s.add_argument("--profile", default="default")
    s.add_argument("--set", action="append", metavar="KEY=VALUE")
    s.add_argument("--quiet", action="store_true")
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
