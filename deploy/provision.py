"""Set keys of an installed edge.toml in place, keeping its comments and layout.

install.sh writes the broker credentials and the first operator with it, first-boot.sh the
node and device names. The standard library reads TOML but cannot write it, and a rewrite
would drop the comments that document the file, so this edits single `key = value` lines.

    python -m deploy.provision /etc/wearable-edge/edge.toml node=ward3-bed12 devices.name=wrist
    python -m deploy.provision /etc/wearable-edge/edge.toml alarms.hr_high.threshold=130
    python -m deploy.provision /etc/wearable-edge/edge.toml --add-operator nurse-station
    python -m deploy.provision /etc/wearable-edge/edge.toml --get mqtt.password
    python -m deploy.provision /etc/wearable-edge/edge.toml --keys
    python -m deploy.provision /etc/wearable-edge/edge.toml \
        --broker-credentials /etc/mosquitto/wearable.passwd

A dotted key names a table (`mqtt.username`); `devices.<key>` is the first [[devices]] table.
Values are typed by the runtime's config schema (edge/config.py; `--keys` lists every key
with its type and default): `130` becomes a float for a threshold, `true` a boolean,
`hr,bp` a list. A table the file lacks (`[alarms.sbp_high]`) is added at its end. The result
is validated with the runtime's own loader before it is written, atomically.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import secrets
import sys
import tempfile
import tomllib
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from deploy.broker import hash_password
from edge.config import Config, config_from_dict
from wire.errors import WearableError

BROKER_USER = "wearable-edge"  # the runtime's user in deploy/mosquitto.acl

_HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.\-]+)\s*\]\]?\s*(#.*)?$")
_ASSIGNMENT = re.compile(r"^\s*[A-Za-z0-9_\-]+\s*=")
_NAME = re.compile(r"^[A-Za-z0-9_\-]+$")  # a bare TOML key: operator names
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


class ProvisionError(WearableError):
    """A config key could not be read or set."""


# -- the config schema (edge/config.py's dataclasses) -------------------------------------------


def _unwrap(hint: Any) -> Any:
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        return next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def key_type(dotted: str) -> Any:
    """The type the runtime's config wants at `dotted` (float, int, bool, str, list[str]), or
    ProvisionError naming the valid keys where the path goes wrong."""
    hint: Any = Config
    done: list[str] = []
    for part in dotted.split("."):
        hint = _unwrap(hint)
        origin = typing.get_origin(hint)
        if origin is list and dataclasses.is_dataclass(typing.get_args(hint)[0]):
            hint = typing.get_args(hint)[0]  # devices.name: the first [[devices]] table
        if dataclasses.is_dataclass(hint):
            fields = {f.name: f for f in dataclasses.fields(hint) if f.name != "source"}
            if part not in fields:
                where = ".".join(done) or "the top level"
                raise ProvisionError(f"unknown key {dotted!r}: valid keys in {where}: "
                                     f"{', '.join(fields)} (all of them: --keys)")
            hint = typing.get_type_hints(hint)[part]
        elif origin is dict:
            if not _NAME.match(part):
                raise ProvisionError(f"{part!r} in {dotted!r} must be letters, digits, '-' "
                                     "or '_'")
            hint = typing.get_args(hint)[1]
        else:
            raise ProvisionError(f"unknown key {dotted!r}: {'.'.join(done)} is a value, not "
                                 "a table")
        done.append(part)
    hint = _unwrap(hint)
    if dataclasses.is_dataclass(hint) or typing.get_origin(hint) is dict:
        raise ProvisionError(f"{dotted!r} is a table: set one of its keys (see --keys)")
    return hint


def parse_value(dotted: str, text: str) -> Any:
    """`text` from the command line as the value the schema wants at `dotted`."""
    hint = key_type(dotted)
    raw = text.strip()
    if hint is bool:
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise ProvisionError(f"{dotted} must be true or false, not {text!r}")
    if hint is int:
        try:
            return int(raw)
        except ValueError:
            raise ProvisionError(f"{dotted} must be a whole number, not {text!r}") from None
    if hint is float:
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise ProvisionError(f"{dotted} must be a number (e.g. 130 or 7.5), not {text!r}")
        return value
    if typing.get_origin(hint) is list:
        if raw.startswith("["):
            try:
                items = tomllib.loads(f"v = {raw}")["v"]
            except tomllib.TOMLDecodeError:
                raise ProvisionError(f"{dotted} must be a list such as a,b or "
                                     f'["a", "b"], not {text!r}') from None
        else:
            items = [item.strip() for item in raw.split(",") if item.strip()]
        if not all(isinstance(item, str) for item in items):
            raise ProvisionError(f"{dotted} must be a list of names, not {text!r}")
        return items
    return text  # a string, exactly as given


def toml_value(value: Any) -> str:
    """`value` as a TOML literal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    # json.dumps gives a valid TOML basic string: same quoting and \uXXXX escapes.
    return json.dumps(str(value), ensure_ascii=False)


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is list:
        return "list"
    return getattr(hint, "__name__", str(hint))


def documented_keys() -> Iterator[tuple[str, str, Any]]:
    """(dotted key, type name, default) for every key `provision` can set."""

    def walk(cls: Any, prefix: str, instance: Any) -> Iterator[tuple[str, str, Any]]:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name == "source":
                continue
            key, hint = f"{prefix}{f.name}", _unwrap(hints[f.name])
            default = getattr(instance, f.name, None) if instance is not None else None
            item = typing.get_args(hint)[0] if typing.get_origin(hint) is list else None
            if dataclasses.is_dataclass(hint):
                yield from walk(hint, f"{key}.", default)
            elif item is not None and dataclasses.is_dataclass(item):
                yield from walk(item, f"{key}.", None)  # devices.<key>: the first device
            elif typing.get_origin(hint) is dict:
                yield f"{key}.<name>", _type_name(typing.get_args(hint)[1]), None
            else:
                yield key, _type_name(hint), default

    yield from walk(Config, "", Config())


def _split(dotted: str) -> tuple[str, str]:
    table, _, key = dotted.rpartition(".")
    if not key:
        raise ProvisionError(f"empty key in {dotted!r}")
    return table, key


def set_key(text: str, dotted: str, value: Any) -> str:
    """`text` with `dotted` set to `value` (a str, number, bool or list): its line is
    replaced, or a new line is added after the table's last assignment. A missing table is
    added at the end, except a [[devices]] table (a device needs its port too)."""
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
    new_line = f"{key} = {toml_value(value)}\n"
    if start is None:
        if table.split(".")[0] == "devices":
            raise ProvisionError(f"no [[devices]] table to put {dotted!r} in: add the "
                                 "wearable's table (name and port) to the file first")
        ending = "" if not text or text.endswith("\n") else "\n"
        return f"{text}{ending}\n[{table}]\n{new_line}"
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
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ProvisionError(f"edit would make {path} invalid TOML: {err}") from None
    config_from_dict(data, source=path)  # the runtime's own rules


def provision(path: Path, assignments: dict[str, Any]) -> None:
    """Apply `assignments` (already typed: see parse_value) to the file at `path`
    atomically, or change nothing."""
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


def add_operator(config: Path, name: str, *, replace: bool = False) -> str:
    """A new operator with a fresh random secret in the config's [commands.operators];
    returns the secret, which exists nowhere else: the caller shows it once."""
    if not _NAME.match(name):
        raise ProvisionError(f"operator name {name!r} must be letters, digits, '-' or '_' "
                             "(e.g. nurse-station)")
    try:
        operators = get_key(config.read_text(), "commands.operators")
    except ProvisionError:
        operators = {}
    if isinstance(operators, dict) and name in operators and not replace:
        raise ProvisionError(f"operator {name!r} already exists in {config}; add --replace "
                             "to give it a new secret (the old one stops working)")
    secret = secrets.token_urlsafe(24)  # 32 characters, 192 bits
    provision(config, {f"commands.operators.{name}": secret})
    return secret


def has_operator(config: Path) -> bool:
    try:
        return bool(get_key(config.read_text(), "commands.operators"))
    except ProvisionError:
        return False


def _print_keys() -> None:
    rows = list(documented_keys())
    width = max(len(key) for key, _, _ in rows)
    for key, kind, default in rows:
        shown = "" if default is None else f"  (default {toml_value(default)})"
        print(f"{key:<{width}}  {kind}{shown}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.provision",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", type=Path, help="edge.toml to edit")
    parser.add_argument("assignments", nargs="*", metavar="KEY=VALUE",
                        help="values typed by the config schema (--keys lists them)")
    parser.add_argument("--get", metavar="KEY", help="print one key's value and exit")
    parser.add_argument("--keys", action="store_true",
                        help="list every key with its type and default, and exit")
    parser.add_argument("--add-operator", metavar="NAME",
                        help="add an operator with a new random secret, printed once on "
                        "stdout and stored only in this config")
    parser.add_argument("--if-none", action="store_true",
                        help="with --add-operator: only if the config has no operator yet")
    parser.add_argument("--replace", action="store_true",
                        help="with --add-operator: give an existing operator a new secret")
    parser.add_argument(
        "--broker-credentials",
        metavar="PASSWD_FILE",
        type=Path,
        help=f"make sure the runtime logs in to the broker as {BROKER_USER}, "
        "adding it to this mosquitto password file",
    )
    args = parser.parse_args(argv)
    if args.keys:
        _print_keys()
        return 0
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
            pairs[key.strip()] = parse_value(key.strip(), value)
        if pairs:
            provision(args.config, pairs)
        if args.add_operator and not (args.if_none and has_operator(args.config)):
            secret = add_operator(args.config, args.add_operator, replace=args.replace)
            print(f"operator {args.add_operator}: secret {secret}")
            print(f"  shown only now, stored only in {args.config}: give it to the operator's "
                  "station (e.g. `wearable-edge watch`), never by e-mail or chat")
    except OSError as err:
        print(f"provision: {args.config}: {err.strerror}", file=sys.stderr)
        return 1
    except WearableError as err:
        print(f"provision: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
