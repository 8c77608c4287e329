"""Operator commands: validation and authorisation, then acknowledge over a real broker."""

import json

import pytest

from edge.commands import parse_command
from edge.config import CommandsConfig
from edge.errors import CommandError

TOKEN = "s3cret-token-0123"
CONFIG = CommandsConfig(operators={"nurse": TOKEN})


def cmd(**fields):
    base = {"id": "c1", "operator": "nurse", "token": TOKEN, "command": "acknowledge",
            "condition": "hr_high"}
    return json.dumps({k: v for k, v in (base | fields).items() if v is not None}).encode()


def test_a_valid_acknowledge_and_silence():
    ack = parse_command(cmd(), CONFIG)
    assert (ack.id, ack.operator, ack.command, ack.condition) == ("c1", "nurse", "acknowledge",
                                                                  "hr_high")
    silence = parse_command(cmd(command="silence", minutes=2), CONFIG)
    assert silence.minutes == 2.0


@pytest.mark.parametrize(("payload", "reason", "has_id"), [
    (b"{not json", "invalid JSON", False),
    (b"[1, 2]", "JSON object", False),
    (cmd(token="wrong-token-000000"), "not authorised", True),
    (cmd(operator="mallory"), "not authorised", True),
    (cmd(operator=None), "'operator' is required", True),
    (cmd(command="reboot"), "unknown command 'reboot'", True),
    (cmd(extra=1), "unknown field 'extra'", True),
    (cmd(condition="spo2_low"), "'condition' must be one of", True),
    (cmd(command="silence", minutes=0), "'minutes' must be a number in (0, 10]", True),
    (cmd(command="silence", minutes=400), "'minutes'", True),
    (cmd(command="silence", minutes=True), "'minutes'", True),
])
def test_refusals_say_why(payload, reason, has_id):
    with pytest.raises(CommandError) as err:
        parse_command(payload, CONFIG)
    assert reason in str(err.value)
    assert err.value.command_id == ("c1" if has_id else None)


def test_no_operators_configured_refuses_everything():
    with pytest.raises(CommandError, match="not authorised"):
        parse_command(cmd(), CommandsConfig())
