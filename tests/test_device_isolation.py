"""A fault stays inside one device, and one device's clock trouble never stops it (#12 cases
3 and 4, #11 item 3): through the real `wearable-edge replay` CLI, real interpreters and
simulated recordings; the pipeline directly for what only memory accounting can show."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from device_sim import Scenario, frames, simulate
from edge.config import AlarmsConfig
from edge.infer import load_model
from edge.messages import Topics
from edge.pipeline import DevicePipeline
from wire import Channel, Frame, encode_frame

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"


def edge(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


def sim_recording(path: Path, *args: str) -> Path:
    subprocess.run([sys.executable, "-m", "device_sim", "run", "--out", str(path), *args],
                   check=True, cwd=ROOT)
    return path


def messages(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def vitals(out: list[dict], vital: str) -> list[dict]:
    return [m["payload"] for m in out
            if m["topic"].endswith("/vitals") and m["payload"]["vital"] == vital]


def alarms(out: list[dict], condition: str) -> list[dict]:
    return [m["payload"] for m in out
            if m["topic"].endswith("/alarms") and m["payload"]["condition"] == condition]


def broken_bp_models(tmp_path: Path) -> Path:
    """hr and glucose as shipped and a bp bundle whose manifest passes the feature function
    a parameter it does not take: every BP window raises TypeError (a bug on the device's
    path)."""
    models = tmp_path / "models"
    models.mkdir()
    for name in ("hr", "bp", "glucose"):
        shutil.copy(MODELS / f"{name}.tflite", models)
        shutil.copy(MODELS / f"{name}.json", models)
    manifest = json.loads((models / "bp.json").read_text())
    manifest["feature_params"]["not_a_parameter"] = 1
    (models / "bp.json").write_text(json.dumps(manifest))
    return models


def test_a_model_that_faults_on_every_window_costs_the_device_nothing_else(tmp_path):
    """Every BP window raises: replay reports the faults in one summary line, raises
    runtime_error, and heart rate is estimated to the end (it used to exit with a
    traceback at the first BP window)."""
    recording = sim_recording(tmp_path / "rec.bin", "--scenario", "normal", "--duration",
                              "60", "--channels", "ppg,acc,ecg")
    out = tmp_path / "out.jsonl"
    result = edge("replay", str(recording), "--models", str(broken_bp_models(tmp_path)),
                  "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    summary = result.stderr.strip().splitlines()[-1]
    assert "runtime fault(s) caught and skipped" in summary, summary
    got = messages(out)
    hr = vitals(got, "heart_rate")
    assert len(hr) >= 24 and hr[-1]["device_time_s"] >= 56  # a window every 2 s to the end
    raised = [a for a in alarms(got, "runtime_error") if a["event"] == "raised"]
    assert len(raised) == 1 and raised[0]["kind"] == "technical"
    assert vitals(got, "systolic_bp") == []


@pytest.mark.parametrize("timestamp_us", [2**63, 2**64 - 1, 7 * 86400 * 10**6],
                         ids=["2^63us", "u64max", "+7days"])
def test_a_glitched_device_clock_is_a_new_epoch_not_an_allocation(tmp_path, timestamp_us):
    """One valid-CRC PPG frame stamped far in the future (2^63 us used to kill the reader
    thread with a 4 PiB allocation; +7 days took 1.1 GB): replay goes on, heart rate is
    estimated to the end of the recording, no alarm time leaves the session timeline."""
    rec = simulate(Scenario.constant(75, 120), seed=4)
    data = bytearray()
    for i, (_, frame) in enumerate(frames(rec)):
        if i in (600, 601):  # two frames in a row, mid-recording
            frame = dataclasses.replace(
                frame, timestamp_us=min(timestamp_us + frame.timestamp_us, 2**64 - 1))
        data += encode_frame(frame)
    recording = tmp_path / "glitch.bin"
    recording.write_bytes(bytes(data))
    out = tmp_path / "out.jsonl"
    result = edge("replay", str(recording), "--models", str(MODELS), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    hr = vitals(messages(out), "heart_rate")
    times = [v["device_time_s"] for v in hr]
    assert times[-1] >= 116 and len([t for t in times if t > 60]) >= 25
    assert all(abs(v["value"] - 75) < 5 for v in hr)


def test_a_clock_jump_allocates_nothing_sized_by_the_jump():
    """Memory for a frame stamped +7 days is that of a fresh start, not of the gap."""
    model = load_model(MODELS / "hr.json")
    device = DevicePipeline("d", [model], AlarmsConfig(), Topics("w", "n"), strict=True)
    stream = [f for _, f in frames(simulate(Scenario.constant(70, 40), seed=2))]
    half = len(stream) // 2
    for frame in stream[:half]:
        device.feed(encode_frame(frame))
    ppg = next(f for f in stream[half:] if f.channel == Channel.PPG)  # in sequence, no BOOT
    week = dataclasses.replace(ppg, timestamp_us=ppg.timestamp_us + 7 * 86400 * 10**6)
    tracemalloc.start()
    try:
        device.feed(encode_frame(week))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000, peak  # a week of 64 Hz samples held would be ~300 MB


def _config(tmp_path: Path, port: int, devices: dict[str, str], models: Path = MODELS,
            extra: str = "") -> Path:
    path = tmp_path / "edge.toml"
    text = (f'node = "ward-7"\nmodels_dir = "{models}"\n'
            f'[mqtt]\nport = {port}\noutbox = "{tmp_path / "outbox.sqlite"}"\n'
            "status_interval_s = 1\n" + extra)
    for name, tty in devices.items():
        text += f'[[devices]]\nname = "{name}"\nport = "{tty}"\n'
    path.write_text(text)
    return path


def _topic(device: str, kind: str) -> str:
    return f"wearable/ward-7/{device}/{kind}"


def test_a_wearable_absent_at_start_is_waited_for_while_the_others_run(
        broker, mqtt_subscriber, processes, tmp_path):
    """wrist-2's port does not exist at start (not plugged in): `run` does not exit; wrist-1
    is monitored; wrist-2 is in the status as not connected and raises no_data; when its
    port appears (a symlink to a new pty) it is read and no_data clears."""
    sub = mqtt_subscriber("wearable/#", broker=broker)
    later = tmp_path / "ttyLATER"
    _sim, pty = processes.simulator("--scenario", "normal", "--seed", "1", "--speed", "4")
    config = _config(tmp_path, broker.port, {"wrist-1": pty, "wrist-2": str(later)},
                     extra="[alarms.no_data]\nafter_s = 5\n")
    runtime = processes.start("-m", "edge", "run", "--config", str(config))

    status = sub.wait_for(lambda m: m.topic == "wearable/ward-7/status"
                          and "wrist-2" in m.json().get("devices", {}), timeout=30).json()
    assert status["devices"]["wrist-2"]["connected"] is False
    sub.wait_for(_topic("wrist-1", "vitals"), timeout=60)
    no_data = sub.wait_for(lambda m: m.topic == _topic("wrist-2", "alarms")
                           and m.json()["condition"] == "no_data", timeout=30).json()
    assert no_data["event"] == "raised" and no_data["value"] >= 5
    assert runtime.poll() is None

    processes.simulator("--scenario", "normal", "--seed", "2", "--speed", "4",
                        "--link", str(later))
    vitals = sub.wait_for(_topic("wrist-2", "vitals"), timeout=60).json()
    assert vitals["vital"] == "heart_rate"
    sub.wait_for(lambda m: m.topic == _topic("wrist-2", "alarms")
                 and m.json()["condition"] == "no_data" and m.json()["event"] == "cleared",
                 timeout=30)
    sub.wait_for(lambda m: m.topic == "wearable/ward-7/status"
                 and m.json()["devices"]["wrist-2"]["connected"] is True, timeout=30)


def test_a_fault_on_one_device_in_run_raises_runtime_error_and_monitoring_goes_on(
        broker, mqtt_subscriber, processes, tmp_path):
    """A BP model that raises on every window, on a real pty: the device keeps publishing
    heart rate, runtime_error is raised for it, and the status counts the faults (the
    reader thread used to die at the first BP window while status said connected)."""
    sub = mqtt_subscriber("wearable/#", broker=broker)
    _sim, pty = processes.simulator("--scenario", "normal", "--seed", "3", "--speed", "4",
                                    "--channels", "ppg,acc,ecg")
    config = _config(tmp_path, broker.port, {"wrist-1": pty},
                     models=broken_bp_models(tmp_path))
    processes.start("-m", "edge", "run", "--config", str(config), "--log-level", "error")

    raised = sub.wait_for(lambda m: m.topic == _topic("wrist-1", "alarms")
                          and m.json()["condition"] == "runtime_error", timeout=60).json()
    assert raised["event"] == "raised" and raised["priority"] == "high"
    after = raised["device_time_s"]
    sub.wait_for_n(lambda m: m.topic == _topic("wrist-1", "vitals")
                   and m.json()["device_time_s"] > after + 10, 3, timeout=60)
    status = sub.wait_for(lambda m: m.topic == "wearable/ward-7/status"
                          and m.json()["devices"]["wrist-1"].get("faults", 0) >= 3,
                          timeout=30).json()
    assert status["devices"]["wrist-1"]["connected"] is True


def _replay_scenario(tmp_path: Path, scenario: str, config: str = "") -> list[dict]:
    (tmp_path / "scenario.toml").write_text(scenario)
    (tmp_path / "edge.toml").write_text(config)
    recording = sim_recording(tmp_path / "rec.bin", "--scenario-file",
                              str(tmp_path / "scenario.toml"))
    out = tmp_path / "out.jsonl"
    result = edge("replay", str(recording), "--config", str(tmp_path / "edge.toml"),
                  "--models", str(MODELS), "--out", str(out))
    assert result.returncode == 0, result.stderr
    return messages(out)


def test_a_device_reboot_does_not_freeze_a_pending_alarm(tmp_path):
    """HR crosses 150 bpm at 690 s, the wearable reboots at 700 s (BOOT, clock back to 0)
    before the 10-s condition delay is over, and HR stays at 150: hr_high is raised as soon
    as the device is back, on one session timeline (it used to wait until the new clock
    passed the old onset: no alarm in 400 s)."""
    out = _replay_scenario(tmp_path, """channels = ["ppg", "acc"]
[[segment]]
duration_s = 690
hr_bpm = 80
[[segment]]
duration_s = 410
hr_bpm = 150
ramp_s = 0
[[fault]]
kind = "reboot"
at_s = 700
""", "[alarms.hr_high]\ndelay_s = 10\n")
    hr = vitals(out, "heart_rate")
    assert [v for v in hr if v["value"] > 130][-1]["device_time_s"] < 410  # the new clock
    (raised,) = alarms(out, "hr_high")
    assert raised["event"] == "raised"
    assert 690 <= raised["onset_device_time_s"] < 700  # the crossing, before the reboot
    assert raised["device_time_s"] < 700 + 2 + 8 + 4  # boot, first window, a hop or two


def test_a_cgm_lost_at_a_reboot_is_stale_after_15_minutes_not_after_the_old_clock(tmp_path):
    """Last CGM reading at 600 s, the wearable reboots at 700 s and the CGM is gone: cgm_stale
    comes 15 min after the last reading (it used to wait for the new clock to pass the old
    reading's time: 50 min instead of 15)."""
    out = _replay_scenario(tmp_path, """channels = ["acc", "cgm"]
[[segment]]
duration_s = 1800
hr_bpm = 70
[[fault]]
kind = "reboot"
at_s = 700
[[fault]]
kind = "cgm_gap"
at_s = 700
duration_s = 1100
""")
    readings = vitals(out, "glucose")
    assert readings[-1]["device_time_s"] == 600
    (stale,) = alarms(out, "cgm_stale")
    assert stale["event"] == "raised" and stale["value"] == pytest.approx(900, abs=2)
    assert stale["device_time_s"] == pytest.approx(1500, abs=2)


def test_memory_stays_flat_when_a_models_pacing_channel_never_comes():
    """A PPG + accelerometer wearable with the BP model loaded (it paces on the ECG, which
    never comes): the BP runner used to keep every PPG frame, 4.3 MB per device-hour."""
    models = [load_model(MODELS / f"{name}.json") for name in ("hr", "bp")]
    device = DevicePipeline("d", models, AlarmsConfig(), Topics("w", "n"), strict=True)
    data = [encode_frame(f) for _, f in frames(simulate(Scenario.constant(70, 1200), seed=5))]
    tracemalloc.start()
    try:
        for i, frame in enumerate(data):
            device.feed(frame)
            if i == len(data) // 10:
                early, _ = tracemalloc.get_traced_memory()  # after 2 min
        late, _ = tracemalloc.get_traced_memory()  # after 20 min
    finally:
        tracemalloc.stop()
    assert late - early < 100_000, (early, late)  # 18 min of 64 Hz PPG kept: ~1.3 MB


@pytest.mark.parametrize(("names", "needles"), [
    # A glucose 1.x bundle: forecasts only.
    (["glucose_20min", "glucose_30min", "low_risk"],
     ["must declare the output(s) urgent_low_risk", "alarm rule reads"]),
    (["glucose_20min", "glucose_30min"], ["does not name the model's 3 output(s)"]),
])
def test_a_glucose_model_without_the_output_a_rule_reads_is_refused_at_load(
        tmp_path, names, needles):
    """urgent-low-soon reads the urgent-low risk by its declared name: a bundle that renames
    or drops it is refused by `check` (it used to load and the alarm silently never fired)."""
    models = tmp_path / "models"
    shutil.copytree(MODELS, models)
    manifest = json.loads((models / "glucose.json").read_text())
    manifest["output_params"]["names"] = names
    (models / "glucose.json").write_text(json.dumps(manifest))
    (tmp_path / "edge.toml").write_text(f'models_dir = "{models}"\n')
    result = edge("check", "--config", str(tmp_path / "edge.toml"))
    assert result.returncode == 1, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for needle in ["glucose.json", *needles]:
        assert needle in lines[0], lines[0]


def test_a_glucose_model_that_faults_still_lets_every_reading_alarm(tmp_path):
    """The forecaster raises on every reading (a bad bundle): each reading is still published
    (without forecast) and urgent low still fires; runtime_error says what happened."""
    models = tmp_path / "models"
    models.mkdir()
    for suffix in ("tflite", "json"):
        shutil.copy(MODELS / f"glucose.{suffix}", models)
    manifest = json.loads((models / "glucose.json").read_text())
    manifest["feature_params"]["not_a_parameter"] = 1
    (models / "glucose.json").write_text(json.dumps(manifest))
    device = DevicePipeline("cgm", [load_model(models / "glucose.json")], AlarmsConfig(),
                            Topics("w", "n"))
    got = []
    readings = [110, 100, 90] + [80, 70, 60] * 3 + [50, 48]
    for i, mg_dl in enumerate(readings):
        frame = Frame(7, i, i * 300 * 10**6, Channel.CGM, 1 / 300,
                      np.array([[mg_dl]], dtype="<i2"))
        got += device.feed(encode_frame(frame))
    payloads = [m.payload for m in got]
    assert [p["value"] for p in payloads if p.get("vital") == "glucose"][-2:] == [50, 48]
    conditions = {(p["condition"], p["event"]) for p in payloads if "alarm_id" in p}
    assert {("glucose_urgent_low", "raised"), ("runtime_error", "raised")} <= conditions
    assert device.faults == len(readings) - 11  # each reading with a full hour of history


def test_a_cgm_reading_stamped_far_ahead_does_not_hide_the_readings_after_it():
    """One CGM frame stamped 2^63 us: every later reading used to be dropped as 'older than
    the newest' (no glucose alarm ever again); now the clock restart starts a new history."""
    device = DevicePipeline("cgm", [], AlarmsConfig(), Topics("w", "n"))
    got = []
    for i, mg_dl in enumerate([100, 90, 2**63, 80, 60, 50]):
        t_us = 2**63 if mg_dl == 2**63 else i * 300 * 10**6
        frame = Frame(7, i, t_us, Channel.CGM, 1 / 300,
                      np.array([[min(mg_dl, 400)]], dtype="<i2"))
        got += device.feed(encode_frame(frame))
    values = [m.payload["value"] for m in got if m.topic.endswith("/vitals")]
    assert values[-3:] == [80, 60, 50]
    assert any(m.payload.get("condition") == "glucose_urgent_low" for m in got)


def test_run_keeps_a_device_monitored_after_a_frame_stamped_2_63_us(
        broker, mqtt_subscriber, tmp_path, processes):
    """Case 3 through a real pty and `run`: one valid-CRC PPG frame stamped 2^63 us at 20 s
    used to kill the reader thread (status still said connected: true); heart rate is
    published to the end of the 60-s stream, the status shows the clock restarts."""
    import threading

    from device_sim.writers import PtyWriter

    rec = simulate(Scenario.constant(75, 60), seed=6)
    items, glitched = [], False
    for send_time, frame in frames(rec):
        if not glitched and send_time >= 20 and frame.channel == Channel.PPG:
            frame, glitched = dataclasses.replace(frame, timestamp_us=2**63), True
        items.append((send_time, encode_frame(frame)))
    link = tmp_path / "wearable"
    writer = PtyWriter(link=link, settle_s=1.0)
    config = _config(tmp_path, broker.port, {"wrist-1": str(link)})
    sub = mqtt_subscriber("wearable/#", broker=broker)
    processes.start("-m", "edge", "run", "--config", str(config))
    player = threading.Thread(target=lambda: writer.play(items, speed=4), daemon=True)
    player.start()
    try:
        sub.wait_for(lambda m: m.topic == _topic("wrist-1", "vitals")
                     and m.json()["device_time_s"] >= 56, timeout=90)
        status = sub.wait_for(lambda m: m.topic == "wearable/ward-7/status"
                              and m.json()["devices"]["wrist-1"]["clock_epochs"] >= 2,
                              timeout=30).json()
        assert status["devices"]["wrist-1"]["faults"] == 0
    finally:
        player.join(timeout=30)
        writer.close()
