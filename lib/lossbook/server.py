"""A team tracking server: PostgreSQL (Debian's binaries) behind `mlflow server`, both on 127.0.0.1 by default.

    make server                          # .server/: initdb if absent, postgres on PG_PORT, mlflow on PORT
    python -m lossbook.server --dir .server --port 5000 --pg-port 5433 [--host 0.0.0.0]

`Postgres(data_dir, port)` owns one database cluster: `start()` runs `initdb` when the directory holds none
(superuser `lossbook`, trust authentication, TCP on 127.0.0.1 only, no unix socket), `pg_ctl start`, and
`createdb mlflow`; `stop()` is `pg_ctl stop -m fast`. PostgreSQL refuses to run as root, so under uid 0 every
PostgreSQL command runs as an unprivileged user (`postgres` when the package created it, else `nobody`) that
owns the data directory; the directory's parents must be traversable by that user (StartError says so).
`mlflow_command` is the tracking server over it: runs in PostgreSQL, artifacts under `<dir>/artifacts`
served by the server itself (`--serve-artifacts --artifacts-destination`), so clients need only
`MLFLOW_TRACKING_URI=http://host:port`. The tests use the same class for a throwaway cluster.
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from lossbook import REPO_ROOT

DB_USER = "lossbook"
DB_NAME = "mlflow"
INSTALL_HINT = "PostgreSQL is not installed: `apt-get install postgresql` (Debian/Ubuntu) or `brew install postgresql`."


class StartError(RuntimeError):
    """PostgreSQL or the tracking server could not start; the message says why and what to do."""


def pg_bin(name: str) -> Path | None:
    """A PostgreSQL program (`initdb`, `pg_ctl`, `createdb`): on PATH, else Debian's newest /usr/lib/postgresql/<v>/bin."""
    found = shutil.which(name)
    if found:
        return Path(found)
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    for d in reversed(versions):
        if (d / name).exists():
            return d / name
    return None


def available() -> bool:
    """True when initdb, pg_ctl and createdb are all found."""
    return all(pg_bin(n) for n in ("initdb", "pg_ctl", "createdb"))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unprivileged_user() -> pwd.struct_passwd | None:
    """The account PostgreSQL runs as when we are root (`postgres`, else `nobody`); None when not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise StartError("running as root, and neither a `postgres` nor a `nobody` account exists to run PostgreSQL as.")


class Postgres:
    """One PostgreSQL cluster in `data_dir` listening on 127.0.0.1:`port` (TCP only)."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.port = port
        self.user = unprivileged_user()
        self.log = self.data_dir.parent / f"{self.data_dir.name}.log"

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the `mlflow` database (`--backend-store-uri`); psycopg2 named: SQLAlchemy 2.1 defaults to psycopg 3."""
        return f"postgresql+psycopg2://{DB_USER}@127.0.0.1:{self.port}/{DB_NAME}"

    def _as_user(self) -> dict:
        if self.user is None:
            return {}
        uid, gid = self.user.pw_uid, self.user.pw_gid
        return {"user": uid, "group": gid, "extra_groups": [], "env": {**self._env(), "HOME": str(self.data_dir.parent)}}

    def _env(self) -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if not k.startswith("PG")} | {"LC_ALL": "C"}

    def _run(self, name: str, *args: str) -> subprocess.CompletedProcess:
        exe = pg_bin(name)
        if exe is None:
            raise StartError(INSTALL_HINT)
        kw = {"env": self._env(), **self._as_user()}
        return subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=self.data_dir.parent, timeout=120, **kw)

    def _check_access(self) -> None:
        if self.user is None:
            return
        for d in [self.data_dir.parent, *self.data_dir.parent.parents]:
            mode = d.stat().st_mode
            if not (mode & 0o001 or (d.stat().st_uid == self.user.pw_uid and mode & 0o100)):
                raise StartError(
                    f"PostgreSQL runs as {self.user.pw_name} (we are root) but cannot enter {d} (mode {oct(mode & 0o777)}); "
                    f"put the data directory under a path it can traverse (e.g. /tmp or /srv) or `chmod o+x {d}`."
                )

    def start(self) -> None:
        """initdb if `data_dir` holds no cluster, start the server, create the `mlflow` database if missing."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._check_access()
        if not (self.data_dir / "PG_VERSION").exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            if self.user is not None:
                os.chown(self.data_dir, self.user.pw_uid, self.user.pw_gid)
            os.chmod(self.data_dir, 0o700)
            r = self._run("initdb", "-D", str(self.data_dir), "-U", DB_USER, "--auth=trust", "-E", "UTF8", "--no-instructions")
            if r.returncode:
                raise StartError(f"initdb {self.data_dir} failed:\n{r.stderr.strip()}")
        self.log.touch()
        if self.user is not None:
            os.chown(self.log, self.user.pw_uid, self.user.pw_gid)
        opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
        r = self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log), "-o", opts, "-w", "-t", "60", "start")
        if r.returncode:
            tail = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise StartError(f"pg_ctl start ({self.data_dir}, port {self.port}) failed:\n{r.stdout}{r.stderr}{tail}".strip())
        r = self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", DB_USER, DB_NAME)
        if r.returncode and "already exists" not in r.stderr:
            self.stop()
            raise StartError(f"createdb {DB_NAME} failed:\n{r.stderr.strip()}")

    def running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.data_dir), "status").returncode == 0

    def stop(self) -> None:
        """Stop the server (fast shutdown); never raises."""
        try:
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")
        except (OSError, subprocess.SubprocessError, StartError):
            pass


def mlflow_command(backend_uri: str, artifacts: Path, host: str = "127.0.0.1", port: int = 5000) -> list[str]:
    """`mlflow server` over `backend_uri`, serving the artifacts under `artifacts` itself (clients need no disk access)."""
    cmd = [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", backend_uri,
           "--serve-artifacts", "--artifacts-destination", str(Path(artifacts).absolute()),
           "--host", host, "--port", str(port), "--workers", "1"]
    if host not in ("127.0.0.1", "localhost"):
        cmd += ["--allowed-hosts", "*"]  # other machines reach it by this host's name or address
    return cmd


def wait_healthy(url: str, proc: subprocess.Popen | None = None, timeout: float = 180.0) -> None:
    """Wait until `url`/health answers; StartError if `proc` exits first or `timeout` passes."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc is not None and proc.poll() is not None:
            raise StartError(f"the tracking server exited with code {proc.returncode} before answering at {url}")
        try:
            urllib.request.urlopen(url.rstrip("/") + "/health", timeout=2).close()
            return
        except OSError:
            time.sleep(0.5)
    raise StartError(f"the tracking server did not answer at {url} within {timeout:.0f}s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lossbook.server", description="PostgreSQL-backed MLflow tracking server.")
    p.add_argument("--dir", type=Path, default=REPO_ROOT / ".server", help="data: <dir>/postgres, <dir>/artifacts")
    p.add_argument("--host", default="127.0.0.1", help="where mlflow listens (0.0.0.0: the whole network)")
    p.add_argument("--port", type=int, default=5000, help="mlflow's port")
    p.add_argument("--pg-port", type=int, default=5433, help="PostgreSQL's port (always on 127.0.0.1)")
    a = p.parse_args(argv)
    if not available():
        print(f"error: {INSTALL_HINT}", file=sys.stderr)
        return 2
    pg = Postgres(a.dir / "postgres", a.pg_port)
    try:
        pg.start()
    except StartError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    (a.dir / "artifacts").mkdir(parents=True, exist_ok=True)
    shown = a.host if a.host not in ("0.0.0.0", "::") else socket.getfqdn()
    print(f"PostgreSQL {pg.url} (data {pg.data_dir}, log {pg.log})\n"
          f"MLflow tracking server: export MLFLOW_TRACKING_URI=http://{shown}:{a.port}   (Ctrl-C stops both)", flush=True)
    proc = subprocess.Popen(mlflow_command(pg.url, a.dir / "artifacts", a.host, a.port))
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        return proc.wait()
    finally:
        pg.stop()
        print(f"stopped PostgreSQL ({pg.data_dir})", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
