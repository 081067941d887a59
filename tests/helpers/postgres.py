"""A throwaway PostgreSQL server for tests: initdb in a temp folder, listening on a unix socket only
(no TCP port at all), stopped and removed at the end. `initdb` and `postgres` refuse to run as root,
so as root they run as the `postgres` user (Debian's package creates it)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PORT = 5432  # only names the socket file (.s.PGSQL.5432) inside our own folder


def server_binaries() -> Path | None:
    """The newest installed server's bin folder (Debian: /usr/lib/postgresql/<version>/bin), else PATH's."""
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True):
        if (Path(folder) / "initdb").is_file() and (Path(folder) / "postgres").is_file():
            return Path(folder)
    found = shutil.which("initdb")
    return Path(found).parent if found and shutil.which("postgres") else None


def missing_reason() -> str | None:
    """Why the server cannot run here, in one line; None when it can."""
    if server_binaries() is None:
        return "PostgreSQL server not installed (initdb/postgres not in /usr/lib/postgresql/*/bin or PATH; apt-get install postgresql)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg not installed (pip install -e '.[dev]')"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root without a `postgres` user to run the server as"
    return None


@contextmanager
def running_server() -> Iterator[str]:
    """Yields the socket folder of a fresh server (user `postgres`, trust authentication, fsync off)."""
    binaries = server_binaries()
    assert binaries is not None
    root = Path(tempfile.mkdtemp(prefix="vitlight-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        os.chown(root, entry.pw_uid, entry.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, sockets = root / "data", root / "sockets"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C", "LC_ALL": "C"}
    server = None
    try:
        subprocess.run([*as_user, "mkdir", "-p", str(sockets)], check=True, env=env)
        subprocess.run(
            [
                *as_user,
                str(binaries / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--no-locale",
            ],
            check=True,
            capture_output=True,
            env=env,
            cwd=root,
        )
        server = subprocess.Popen(
            [
                *as_user,
                str(binaries / "postgres"),
                "-D",
                str(data),
                "-k",
                str(sockets),
                "-p",
                str(PORT),
                "-c",
                "listen_addresses=",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=50",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(root / "server.log", "wb"),
            env=env,
            cwd=root,
            start_new_session=True,
        )
        deadline = time.time() + 60
        while not (sockets / f".s.PGSQL.{PORT}").exists() or not _accepts(str(sockets)):
            if server.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"postgres did not start: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield str(sockets)
    finally:
        if server is not None and server.poll() is None:
            os.killpg(server.pid, signal.SIGINT)  # "fast" shutdown: ends the sessions, stops cleanly
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        shutil.rmtree(root, ignore_errors=True)


def _accepts(sockets: str) -> bool:
    import psycopg

    try:
        psycopg.connect(host=sockets, port=PORT, user="postgres", dbname="postgres").close()
    except psycopg.OperationalError:
        return False
    return True


def new_database(sockets: str, name: str) -> str:
    """Creates an empty database and returns its SQLAlchemy URL (psycopg 3 over the unix socket)."""
    import psycopg

    with psycopg.connect(host=sockets, port=PORT, user="postgres", dbname="postgres", autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql+psycopg://postgres@/{name}?host={sockets}&port={PORT}"
