"""A private, throw-away mosquitto for tests, the demo and benchmarks.

Each `PrivateBroker` owns a temp dir with its own config and log, listens on loopback only and
never touches a system broker. Standard library only, so importing it costs nothing.

    with PrivateBroker() as broker:
        client.connect(broker.host, broker.port)
        broker.stop()    # the port now refuses connections...
        broker.start()   # ...and is served again, same port, fresh (non-persistent) state
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from wire.errors import WearableError

INSTALL_HINT = "sudo apt-get install mosquitto"
# Debian/Ubuntu put the broker in sbin, which is not on a normal user's PATH.
FALLBACK_PATHS: tuple[str, ...] = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")

# mosquitto 2.x logs this once every listener is bound: the one exact readiness signal.
_READY_MARK = " running"
_LOG_NAME = "mosquitto.log"
_OUT_NAME = "mosquitto.out"


class PrivateBrokerError(WearableError):
    """The private broker could not be started or configured (not edge.errors.BrokerError,
    which is the runtime failing to reach a broker)."""


class BrokerUnavailable(PrivateBrokerError):  # noqa: N818 - the public name callers catch
    """No mosquitto binary on this machine."""


def find_mosquitto() -> str:
    """Path of the mosquitto binary: PATH first, then the usual sbin locations."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in FALLBACK_PATHS:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    searched = ", ".join(("PATH", *FALLBACK_PATHS))
    raise BrokerUnavailable(
        f"mosquitto broker not found (searched {searched}); install it with "
        f"`{INSTALL_HINT}` (or run `make mosquitto`)"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the kernel picks it; a small race is accepted)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = 101) -> str:
    """A mosquitto 2.x password hash ("$7$": PBKDF2-HMAC-SHA512), as mosquitto_passwd writes."""
    salt = secrets.token_bytes(12) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    b64 = base64.b64encode
    return f"$7${iterations}${b64(salt).decode()}${b64(digest).decode()}"


def write_password_file(path: str | os.PathLike[str], users: Mapping[str, str]) -> Path:
    """Write a mosquitto password file for `users` (name -> clear password), mode 0600."""
    lines = []
    for name, password in users.items():
        if not name or ":" in name or "\n" in name:
            raise PrivateBrokerError(f"invalid mosquitto user name {name!r}: non-empty, no ':'")
        lines.append(f"{name}:{hash_password(password)}\n")
    target = Path(path)
    target.write_text("".join(lines))
    target.chmod(0o600)
    return target


def _terminate(proc: subprocess.Popen[bytes], timeout: float) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class PrivateBroker:
    """A mosquitto on 127.0.0.1:`port`, configured in and logging to its own temp dir.

    Anonymous clients are allowed unless `password_file` is given; `acl_file` restricts
    topics. Persistence is off, so a restart forgets sessions and retained messages.
    `extra_config` lines are appended verbatim to the generated config; mosquitto keeps the
    last value of a repeated option, so they can override these defaults too.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        port: int | None = None,
        *,
        password_file: str | os.PathLike[str] | None = None,
        acl_file: str | os.PathLike[str] | None = None,
        extra_config: str = "",
        startup_timeout: float = 10.0,
    ) -> None:
        # Chosen once, so stop()/start() come back on the same port.
        self.port = free_port(self.host) if port is None else port
        # Absolute, because mosquitto resolves relative paths against its own cwd.
        self.password_file = Path(password_file).resolve() if password_file else None
        self.acl_file = Path(acl_file).resolve() if acl_file else None
        self.extra_config = extra_config
        self.startup_timeout = startup_timeout
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc else None

    @property
    def workdir(self) -> Path:
        """The temp dir holding the config and logs (created on first start)."""
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="wearable-mosquitto-"))
        return self._dir

    @property
    def log_path(self) -> Path:
        return self.workdir / _LOG_NAME

    def config_text(self) -> str:
        lines = [
            "# Generated by deploy.broker.PrivateBroker for one test/demo run.",
            f"listener {self.port} {self.host}",
            f"allow_anonymous {'false' if self.password_file else 'true'}",
            "persistence false",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
        ]
        if self.password_file:
            lines.append(f"password_file {self.password_file}")
        if self.acl_file:
            lines.append(f"acl_file {self.acl_file}")
        if os.geteuid() == 0:
            # As root mosquitto would drop to user "mosquitto", who cannot write our temp dir.
            lines.append("user root")
        if self.extra_config:
            lines.append(self.extra_config.strip())
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        """Start mosquitto and return once it accepts TCP connections. No-op if running."""
        if self.running:
            return
        self._forget_process()  # a broker that died on its own leaves nothing to clean up
        binary = find_mosquitto()
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(self.config_text())
        # Only log lines written by this start count as "ready" (restarts append).
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.workdir / _OUT_NAME, "ab") as out:
            proc = subprocess.Popen(
                [binary, "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
        self._proc = proc
        # Safety net: a forgotten broker still dies when the interpreter exits.
        self._finalizer = weakref.finalize(self, _terminate, proc, 2.0)
        self._wait_ready(proc, log_offset)

    def _wait_ready(self, proc: subprocess.Popen[bytes], log_offset: int) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while True:
            code = proc.poll()
            if code is not None:
                self._forget_process()
                raise PrivateBrokerError(
                    f"mosquitto exited with code {code} before listening on "
                    f"{self.host}:{self.port}; log tail:\n{self.log_tail()}"
                )
            if _READY_MARK in self._log_since(log_offset) and self._accepts():
                return
            if time.monotonic() > deadline:
                self.stop()
                raise PrivateBrokerError(
                    f"mosquitto did not accept connections on {self.host}:{self.port} within "
                    f"{self.startup_timeout:g} s; log tail:\n{self.log_tail()}"
                )
            time.sleep(0.02)

    def _accepts(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def _log_since(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(offset)
                return log.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the broker log and of its stdout/stderr, for error messages."""
        parts = []
        for name in (_LOG_NAME, _OUT_NAME):
            path = self.workdir / name
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {name}\n" + "\n".join(tail))
        return "\n".join(parts) or "(no output)"

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate mosquitto (SIGTERM, then SIGKILL after `timeout`). The port stays ours."""
        if self._proc is not None:
            _terminate(self._proc, timeout)
        self._forget_process()

    def _forget_process(self) -> None:
        if self._finalizer is not None:
            self._finalizer.detach()
        self._finalizer = None
        self._proc = None

    def close(self) -> None:
        """Stop the broker and delete its temp dir."""
        self.stop()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> PrivateBroker:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<PrivateBroker {self.url} {state}>"
