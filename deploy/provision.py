"""Set a few keys of an installed edge.toml in place, keeping its comments and layout.

install.sh writes the broker credentials with it and first-boot.sh the node and device names.
The standard library reads TOML but cannot write it, and a rewrite would drop the comments
that document the file, so this edits single `key = value` lines instead.

    python -m deploy.provision /etc/wearable-edge/edge.toml node=ward3-bed12 devices.name=wrist
    python -m deploy.provision /etc/wearable-edge/edge.toml --get mqtt.password
    python -m deploy.provision /etc/wearable-edge/edge.toml \
        --broker-credentials /etc/mosquitto/wearable.passwd

A dotted key names a table (`mqtt.username`); `devices.<key>` is the first [[devices]] table.
The result is validated with the runtime's own loader before it is written.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import sys
import tempfile
import tomllib
from pathlib import Path

from deploy.broker import hash_password
from wire.errors import WearableError

BROKER_USER = "wearable-edge"  # the runtime's user in deploy/mosquitto.acl

_HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.\-]+)\s*\]\]?\s*(#.*)?$")
_ASSIGNMENT = re.compile(r"^\s*[A-Za-z0-9_\-]+\s*=")


class ProvisionError(WearableError):
    """A config key could not be read or set."""


def _split(dotted: str) -> tuple[str, str]:
    table, _, key = dotted.rpartition(".")
    if not key:
        raise ProvisionError(f"empty key in {dotted!r}")
    return table, key


def set_key(text: str, dotted: str, value: str) -> str:
    """`text` with `dotted` set to the string `value`: its line is replaced, or a new line is
    added after the table's last assignment. The table must exist (the root always does)."""
    table, key = _split(dotted)
    lines = text.splitlines(keepends=True)
    # Where the wanted table's body starts and ends (the root table ends at the first header).
    start, end = (0, len(lines)) if not table else (None, len(lines))
    for i, line in enumerate(lines):
        match = _HEADER.match(line)
        if not match:
            continue
        if start is not None:
            end = i
            break
        if match.group(1) == table:
            start = i + 1
    if start is None:
        raise ProvisionError(f"no [{table}] table to put {dotted!r} in")
    # json.dumps gives a valid TOML basic string: same quoting and \uXXXX escapes.
    new_line = f"{key} = {json.dumps(value, ensure_ascii=False)}\n"
    this_key = re.compile(rf"^\s*{re.escape(key)}\s*=")
    after = start  # just below the header, unless the table already has assignments
    for i in range(start, end):
        if this_key.match(lines[i]):
            lines[i] = new_line
            return "".join(lines)
        if _ASSIGNMENT.match(lines[i]):
            after = i + 1
    if after > 0 and not lines[after - 1].endswith("\n"):
        lines[after - 1] += "\n"
    lines.insert(after, new_line)
    return "".join(lines)


def get_key(text: str, dotted: str) -> object:
    data: object = tomllib.loads(text)
    for part in dotted.split("."):
        if isinstance(data, list):
            data = data[0] if data else {}  # devices.name -> the first [[devices]]
        if not isinstance(data, dict) or part not in data:
            raise ProvisionError(f"key {dotted!r} is not set")
        data = data[part]
    return data


def _validate(text: str, path: Path) -> None:
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ProvisionError(f"edit would make {path} invalid TOML: {err}") from None
    try:
        from edge.config import config_from_dict  # the runtime's rules, where it is installed
    except ImportError:
        return
    config_from_dict(tomllib.loads(text), source=path)


def provision(path: Path, assignments: dict[str, str]) -> None:
    """Apply `assignments` to the file at `path` atomically, or change nothing."""
    text = path.read_text()
    for dotted, value in assignments.items():
        text = set_key(text, dotted, value)
    _validate(text, path)
    # Same dir, same mode: the unit user must still be able to read it after the rename.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        st = path.stat()
        os.chmod(tmp, st.st_mode & 0o7777)
        if os.geteuid() == 0:
            os.chown(tmp, st.st_uid, st.st_gid)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def ensure_broker_credentials(config: Path, password_file: Path, user: str = BROKER_USER) -> bool:
    """Give the runtime a broker login: a fresh random password, hashed into the mosquitto
    `password_file` and written in clear into the config's [mqtt] table. Does nothing (and
    returns False) when both already hold `user`. The password never leaves this process."""
    lines = password_file.read_text().splitlines() if password_file.exists() else []
    text = config.read_text()
    try:
        configured = get_key(text, "mqtt.username") == user and bool(get_key(text, "mqtt.password"))
    except ProvisionError:
        configured = False
    if configured and any(line.startswith(f"{user}:") for line in lines):
        return False
    password = secrets.token_urlsafe(24)
    lines = [line for line in lines if not line.startswith(f"{user}:")]
    lines.append(f"{user}:{hash_password(password)}")
    # Config first: if it cannot be written, the broker still accepts the old login.
    provision(config, {"mqtt.username": user, "mqtt.password": password})
    password_file.write_text("\n".join(lines) + "\n")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.provision",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", type=Path, help="edge.toml to edit")
    parser.add_argument("assignments", nargs="*", metavar="KEY=VALUE", help="string values")
    parser.add_argument("--get", metavar="KEY", help="print one key's value and exit")
    parser.add_argument(
        "--broker-credentials",
        metavar="PASSWD_FILE",
        type=Path,
        help=f"make sure the runtime logs in to the broker as {BROKER_USER}, "
        "adding it to this mosquitto password file",
    )
    args = parser.parse_args(argv)
    try:
        if args.broker_credentials:
            changed = ensure_broker_credentials(args.config, args.broker_credentials)
            state = "new password written to" if changed else "already configured in"
            print(f"broker user {BROKER_USER}: {state} {args.broker_credentials} and {args.config}")
        if args.get:
            value = get_key(args.config.read_text(), args.get)
            print(value if isinstance(value, str) else json.dumps(value))
            return 0
        pairs = {}
        for item in args.assignments:
            key, sep, value = item.partition("=")
            if not sep:
                raise ProvisionError(f"expected KEY=VALUE, got {item!r}")
            pairs[key.strip()] = value
        provision(args.config, pairs)
    except OSError as err:
        print(f"provision: {args.config}: {err.strerror}", file=sys.stderr)
        return 1
    except WearableError as err:
        print(f"provision: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
