"""Operator commands: hostile payloads, signatures, replays; then through the real CLI, a real
broker and a simulator on a pty."""

import hashlib
import hmac
import json
import os
import stat
import time

import pytest
from e2e import edge_config, validate

from edge.commands import (
    MAX_COMMAND_BYTES,
    CommandLog,
    canonical_string,
    parse_command,
    signed_command,
)
from edge.config import CommandsConfig
from edge.errors import CommandError

SECRET = "s3cret-signing-key-0123"
CONFIG = CommandsConfig(operators={"nurse": SECRET})
NOW = 1_800_000_000.0


def cmd(command="acknowledge", fields=None, *, secret=SECRET, device="wrist-1", now=NOW,
        **overrides):
    fields = {"condition": "hr_high"} if fields is None else fields
    payload = signed_command("nurse", secret, device, command, fields, now=now,
                             command_id="c1") | overrides
    return json.dumps({k: v for k, v in payload.items() if v is not None}).encode()


def parse(payload, now=NOW):
    return parse_command(payload, CONFIG, "wrist-1", now=now)


def test_a_valid_acknowledge_silence_and_calibrate():
    ack = parse(cmd())
    assert (ack.id, ack.operator, ack.command, ack.condition) == ("c1", "nurse", "acknowledge",
                                                                  "hr_high")
    assert parse(cmd("silence", {"condition": "hr_low", "minutes": 2})).minutes == 2.0
    cal = parse(cmd("calibrate", {"systolic": 124, "diastolic": 82.5}))
    assert (cal.systolic, cal.diastolic) == (124.0, 82.5)


def test_the_canonical_string_is_what_the_docs_spell_out():
    # docs/alarms.md gives this string and this signature for another language to check.
    text = canonical_string("c-19", "nurse-station", "wrist-1", "calibrate", 1796000000.5,
                            {"systolic": 124, "diastolic": 82.0})
    assert text == ("wearable-edge-command/1\nc-19\nnurse-station\nwrist-1\ncalibrate\n"
                    "1796000000.5\ndiastolic=82\nsystolic=124")
    payload = signed_command("nurse-station", "6f0c2e9d8b1a4c3e", "wrist-1", "calibrate",
                             {"systolic": 124, "diastolic": 82.0}, now=1796000000.5,
                             command_id="c-19")
    expected = hmac.new(b"6f0c2e9d8b1a4c3e", text.encode(), hashlib.sha256).hexdigest()
    assert payload["signature"] == expected == (
        "776fd08954ca0684f856ebcc1a88db5055c5525b6650fa1254b760e8a2ba2ff4")
    assert "6f0c2e9d8b1a4c3e" not in json.dumps(payload)  # the secret never travels


@pytest.mark.parametrize(("payload", "reason", "has_id"), [
    (b"[" * 1000, "flat JSON object", False),
    (b'{"id": [[[[1]]]]}', "flat JSON object", False),
    (b" " * (MAX_COMMAND_BYTES + 1), f"limit is {MAX_COMMAND_BYTES} bytes", False),
    (b"{not json", "invalid JSON", False),
    (b'{"id": NaN}', "invalid JSON", False),
    (b"[1, 2]", "JSON object", False),
    (cmd(token="s3cret-signing-key-0123"), "sign the command", True),
    (cmd(secret="wrong-secret-0000000"), "not authorised", True),
    (cmd(operator="mallory"), "not authorised", True),
    (cmd(signature=None), "'signature' is required", True),
    (cmd(time=None), "'time' is required", True),
    (cmd(id=None), "'id' is required", False),
    (cmd(condition="hr_low"), "not authorised", True),  # altered after signing
    (cmd(device="wrist-2"), "signed for device 'wrist-2', sent to 'wrist-1'", True),
    (cmd(now=NOW - 61), "expired: signed 61 s behind", True),
    (cmd(now=NOW + 120), "expired: signed 120 s ahead of", True),
    (cmd("reboot", {}), "unknown command 'reboot'", True),
    (cmd(fields={"condition": "hr_high", "extra": 1}), "unknown field 'extra'", True),
    (cmd(nested=[1]), "must be a number or a printable", True),
    (cmd(fields={"condition": "spo2_low"}), "'condition' must be one of", True),
    (cmd("silence", {"condition": "hr_high", "minutes": 0}), "'minutes' must be a number in "
     "(0, 10]", True),
    (cmd("silence", {"condition": "hr_high", "minutes": 400}), "'minutes'", True),
])
def test_refusals_say_why(payload, reason, has_id):
    with pytest.raises(CommandError) as err:
        parse(payload)
    assert reason in str(err.value)
    assert err.value.command_id == ("c1" if has_id else None)


def test_no_operators_configured_refuses_everything():
    with pytest.raises(CommandError, match="not authorised"):
        parse_command(cmd(), CommandsConfig(), "wrist-1", now=NOW)


def test_the_command_log_is_bounded_private_and_survives_a_restart(tmp_path):
    path = tmp_path / "state" / "ids.json"
    path.parent.mkdir(mode=0o700)
    log = CommandLog(path, capacity=3)
    for i in range(5):
        log.remember(f"c{i}", applied=i % 2 == 0)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = CommandLog(path, capacity=3)
    assert [again.seen(f"c{i}") for i in range(5)] == [None, None, True, False, True]
    path.write_text("{garbage")
    assert CommandLog(path).seen("c4") is None  # unreadable: a warning, not a stopped node


# -- through the CLI, a real broker and a simulated wearable ----------------------------------


def test_hostile_and_replayed_commands_through_the_runtime(broker, mqtt_subscriber,
                                                           mqtt_publish, processes, tmp_path):
    _sim, pty = processes.simulator("--scenario", "tachycardia", "--seed", "3", "--speed", "2")
    config = edge_config(tmp_path, pty, broker.port)
    config.write_text(config.read_text() + "[alarms.hr_high]\npriority = 'high'\n"
                      f"[commands]\nid_file = '{tmp_path / 'state' / 'ids.json'}'\n"
                      f"[commands.operators]\nnurse = '{SECRET}'\n")
    sub = mqtt_subscriber("wearable/#", broker=broker)
    runtime = processes.start("-m", "edge", "run", "--config", str(config))
    topic = "wearable/ward-7/wrist-1/cmd"

    def replies(command_id, n=1):
        found = sub.wait_for_n(lambda m: m.topic == "wearable/ward-7/wrist-1/reply"
                               and m.json()["id"] == command_id, n, timeout=15)
        for reply in found:
            validate("reply", reply.json())
        return [m.json() for m in found]

    # Case 1 of issue #12: this once raised RecursionError and stopped every device.
    sub.wait_for("wearable/ward-7/wrist-1/vitals", timeout=60)
    mqtt_publish(topic, b"[" * 1000, broker=broker)
    mqtt_publish(topic, b"{" * 200_000, broker=broker)
    nested, huge = replies(None, 2)
    assert not nested["ok"] and "flat JSON object" in nested["reason"]
    assert not huge["ok"] and "limit is" in huge["reason"]
    sub.clear()
    sub.wait_for_n("wearable/ward-7/wrist-1/vitals", 2, timeout=30)  # still monitoring
    assert runtime.poll() is None

    raised = sub.wait_for(lambda m: m.topic.endswith("/alarms")
                          and m.json()["event"] == "raised", timeout=60).json()
    token = {"id": "t-1", "operator": "nurse", "token": SECRET, "command": "acknowledge",
             "condition": "hr_high"}
    mqtt_publish(topic, json.dumps(token), broker=broker)
    assert "sign the command" in replies("t-1")[0]["reason"]
    stale = signed_command("nurse", SECRET, "wrist-1", "acknowledge", {"condition": "hr_high"},
                           now=time.time() - 600, command_id="old-1")
    mqtt_publish(topic, json.dumps(stale), broker=broker)
    assert "expired" in replies("old-1")[0]["reason"]

    # Case 6: the same signed command twice is applied once, the replay answered duplicate.
    ack = json.dumps(signed_command("nurse", SECRET, "wrist-1", "acknowledge",
                                    {"condition": "hr_high"}, command_id="ack-1"))
    mqtt_publish(topic, ack, broker=broker)
    mqtt_publish(topic, ack, broker=broker)
    first, second = replies("ack-1", 2)
    assert first["ok"] is True
    assert second["ok"] is False and second["reason"].startswith("duplicate") and (
        "applied" in second["reason"])
    acknowledged = sub.wait_for(lambda m: m.topic.endswith("/alarms")
                                and m.json()["event"] == "acknowledged", timeout=10).json()
    assert acknowledged["alarm_id"] == raised["alarm_id"]
    # The reply to the replay follows anything the replay published: nothing more came.
    assert len(sub.matching(lambda m: m.topic.endswith("/alarms")
                            and m.json()["event"] == "acknowledged")) == 1
    ids = tmp_path / "state" / "ids.json"
    assert stat.S_IMODE(os.stat(ids).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(ids.parent).st_mode) == 0o700
    assert runtime.poll() is None
