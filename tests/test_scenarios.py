"""Every clinical scenario of the simulator through the real serial path and a real broker.

The test simulates a scenario (the recording `wearable-sim run --scenario NAME --seed S`
sends) and writes its bytes into a real pseudo-terminal as fast as the runtime reads them;
`wearable-edge run`, with the shipped hr, bp and glucose models, reads the pty with pyserial
and publishes to a private mosquitto, where a subscriber collects the alarms. Each scenario
must raise exactly its expected alarms (condition and priority), one alarm per condition,
within the stated delay of the condition's onset in the simulator's ground truth, and clear
those whose condition ends within the scenario. Times are the device's clock, so playing
faster than real time changes nothing but the wall time.

Blood pressure is calibrated as a nurse would: a cuff reading at rest in the first minute,
sent over MQTT for the hypertensive crisis (played at 10x so the command lands in time), on
file (calibration.json, as a previous command would have left it) for the others.
"""

from __future__ import annotations

import json
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from e2e import ROOT, validate

from device_sim import get_scenario, simulate
from device_sim.physiology import Recording
from device_sim.stream import stream
from device_sim.writers import PtyWriter
from edge.calibration import CalibrationStore
from edge.commands import signed_command
from edge.config import AlarmsConfig
from edge.infer import load_model
from edge.messages import Topics
from edge.pipeline import DevicePipeline

SEED = 1
DEVICE = "wrist-1"
TOKEN = "nurse-token-0123456"
LIMITS = AlarmsConfig()
# How long after the condition's onset in the ground truth an alarm may come. HR: IEC
# 60601-2-27's 10 s. BP: the estimate's lag (half a window) + the hop + the 10-s condition
# delay, on a slow ramp where an estimate error of a few mmHg is tens of seconds. Glucose
# alarms come on the first CGM reading past the limit (checked exactly, below).
MAX_DELAY_S = {"heart_rate": 10.0, "systolic_bp": 40.0, "diastolic_bp": 40.0}
# And how long after the condition ends it must have cleared (the estimate's lag, the
# hysteresis and the clear delay).
MAX_CLEAR_S = {"heart_rate": 20.0, "systolic_bp": 60.0, "diastolic_bp": 60.0}
BP_HOP_S = json.loads((ROOT / "models" / "bp.json").read_text())["hop_s"]  # BP estimate period


@dataclass(frozen=True)
class Expect:
    alarms: dict[str, str] = field(default_factory=dict)  # condition -> priority
    cleared: tuple[str, ...] = ()  # conditions that end within the scenario
    speed: float = 0.0  # 0: as fast as the runtime reads
    calibrate_over_mqtt: bool = False


SCENARIOS = {
    "normal": Expect(),
    "rest": Expect(),
    "tachycardia": Expect({"hr_high": "medium"}, ("hr_high",)),
    "bradycardia": Expect({"hr_low": "high"}, ("hr_low",)),
    # Running at 160 bpm is exercise, not a tachycardia (hr_high's moving limit). hr 1.x lost
    # the heart while the cadence crossed it (a technical motion alarm); tracked across
    # windows (hr 2.0.0) the reading holds: exercise seeds 1 and 2 read within 1.5-1.8 bpm MAE,
    # 97-99 % good (training.hr_real.run_runtime), so no alarm at all.
    "exercise": Expect(),
    "atrial-fibrillation": Expect({"hr_high": "medium"}, ("hr_high",)),
    "hypertensive-crisis": Expect({"sbp_high": "high", "dbp_high": "medium"}, speed=10.0,
                                  calibrate_over_mqtt=True),
    "hypotension": Expect({"sbp_low": "high"}, ("sbp_low",)),
    "hypoglycaemia": Expect(
        {"glucose_low": "medium", "glucose_urgent_low": "high",
         "glucose_urgent_low_soon": "high"},
        ("glucose_low", "glucose_urgent_low", "glucose_urgent_low_soon")),
    "hyperglycaemia": Expect({"glucose_high": "medium", "glucose_rising": "low"},
                             ("glucose_rising",)),
    "sleep": Expect(),
    "normal-day": Expect(),
}


def test_every_shipped_scenario_has_an_expectation():
    from device_sim import scenario_names

    assert sorted(SCENARIOS) == sorted(scenario_names())


def calibration_at_rest(rec: Recording, tmp_path: Path) -> Path:
    """The calibration a nurse's cuff reading at 60 s would have stored: the first minute
    through the runtime's own pipeline, calibrated with the true pressure of its last 30 s."""
    models = [load_model(ROOT / "models" / f"{m}.json") for m in ("hr", "bp")]
    pipeline = DevicePipeline(DEVICE, models, LIMITS, Topics("wearable", "ward-7"))
    for t, data in stream(rec, 1):
        if t > 60:
            break
        pipeline.feed(data)
    cuff = (float(np.mean(rec.truth.sbp_mmhg[30:60])), float(np.mean(rec.truth.dbp_mmhg[30:60])))
    cal = pipeline.estimator.blood_pressure.calibrate(*cuff, "test", "2026-11-23T00:00:00Z")
    path = tmp_path / "calibration.json"
    CalibrationStore(path).put(DEVICE, cal)
    return path


def write_config(tmp_path: Path, pty: str, port: int) -> Path:
    path = tmp_path / "edge.toml"
    path.write_text(
        f'node = "ward-7"\nmodels_dir = "{ROOT / "models"}"\n'
        'models = ["hr", "bp", "glucose"]\n'
        f'calibration_file = "{tmp_path / "calibration.json"}"\n'
        f'[mqtt]\nport = {port}\noutbox = "{tmp_path / "outbox.sqlite"}"\n'
        f'[commands.operators]\nnurse = "{TOKEN}"\n'
        f'[[devices]]\nname = "{DEVICE}"\nport = "{pty}"\n')
    return path


def play(rec: Recording, speed: float) -> tuple[PtyWriter, threading.Thread]:
    """A fresh pty and a thread, not started, that writes the recording into it. Start it once
    the runtime is online: it opened the port (pyserial flushes its input while opening)
    before it connected. Close the writer once the runtime has stopped, so that the runtime
    never reopens a /dev/pts/N the kernel has handed to another process meanwhile."""
    writer = PtyWriter()
    thread = threading.Thread(target=writer.play, args=(list(stream(rec, 1)), speed),
                              daemon=True)
    return writer, thread


def run_scenario(name: str, expect: Expect, broker, mqtt_subscriber, mqtt_publish, processes,
                 tmp_path: Path, seed: int = SEED) -> tuple[Recording, list[dict], list[dict]]:
    rec = simulate(get_scenario(name), seed)
    has_bp = rec.ecg is not None
    if has_bp and not expect.calibrate_over_mqtt:
        calibration_at_rest(rec, tmp_path)
    pty, player = play(rec, expect.speed)
    sub = mqtt_subscriber("wearable/#", broker=broker)
    runtime = processes.start("-m", "edge", "run", "--config",
                              str(write_config(tmp_path, pty.path, broker.port)))
    sub.wait_for(lambda m: m.topic == "wearable/ward-7/status"
                 and m.json()["state"] == "online", timeout=60)
    player.start()
    if expect.calibrate_over_mqtt:
        # The nurse's cuff reading at rest, once the runtime has 30 s of BP estimates.
        sub.wait_for(lambda m: m.topic.endswith("/vitals") and m.json()["vital"] == "systolic_bp"
                     and m.json()["device_time_s"] >= 40, timeout=120)
        cuff = {"systolic": round(float(rec.truth.sbp_mmhg[10:40].mean())),
                "diastolic": round(float(rec.truth.dbp_mmhg[10:40].mean()))}
        mqtt_publish(f"wearable/ward-7/{DEVICE}/cmd", json.dumps(signed_command(
            "nurse", TOKEN, DEVICE, "calibrate", cuff, node="ward-7",
            command_id="cal-1")), broker=broker)
        reply = sub.wait_for(f"wearable/ward-7/{DEVICE}/reply", timeout=10).json()
        validate("reply", reply)
        assert reply["ok"] and reply["reason"].startswith(
            f"calibrated to {cuff['systolic']}/{cuff['diastolic']} mmHg"), reply
    # Done when the last heart-rate window of the recording has been published.
    last_window_s = rec.duration_s - 2
    timeout = 120 + rec.duration_s / (100 if expect.speed == 0 else expect.speed)
    sub.wait_for(lambda m: m.topic.endswith("/vitals") and m.json()["vital"] == "heart_rate"
                 and m.json()["device_time_s"] >= last_window_s, timeout=timeout)
    player.join(timeout=30)
    assert not player.is_alive()
    pty.drain()  # the runtime has read every byte
    runtime.send_signal(signal.SIGTERM)
    assert runtime.wait(timeout=30) == 0
    pty.close(drain=False)
    alarms = [m.json() for m in sub.matching(f"wearable/ward-7/{DEVICE}/alarms")]
    vitals = [m.json() for m in sub.matching(f"wearable/ward-7/{DEVICE}/vitals")]
    for payload in alarms + vitals[:50]:
        validate("alarm" if "alarm_id" in payload else "vitals", payload)
    if has_bp:
        good_bp = [v for v in vitals if v["vital"] == "systolic_bp" and v["quality"] == "good"]
        assert len(good_bp) > 0.5 * rec.duration_s / BP_HOP_S  # calibrated: BP drives alarms
    return rec, alarms, vitals


def first_crossing(truth: np.ndarray, limit: float, above: bool, after: float = 0.0) -> float:
    crossed = (truth > limit) if above else (truth <= limit)
    crossed[: int(after)] = False
    return float(np.argmax(crossed)) if crossed.any() else np.inf


def settled(truth: np.ndarray, limit: float, above: bool, after: float,
            hold_s: int = 20) -> float:
    """First second after `after` from which the truth stays past `limit` for `hold_s`."""
    past = (truth > limit) if above else (truth <= limit)
    for i in range(int(after), len(past) - hold_s):
        if past[i : i + hold_s].all():
            return float(i)
    return np.inf


def sustained(values: np.ndarray, seconds: int = 4) -> np.ndarray:
    """Trailing mean: a crossing the estimate can see (in AF the beat-to-beat rate jumps by
    tens of bpm from one second to the next)."""
    total = np.cumsum(np.concatenate([[0.0], values]))
    start = np.maximum(np.arange(1, len(values) + 1) - seconds, 0)
    return (total[1:] - total[start]) / (np.arange(1, len(values) + 1) - start)


RULES = {  # condition -> (truth series name, vital, above)
    "hr_high": ("hr_bpm", "heart_rate", True),
    "hr_low": ("hr_bpm", "heart_rate", False),
    "sbp_high": ("sbp_mmhg", "systolic_bp", True),
    "sbp_low": ("sbp_mmhg", "systolic_bp", False),
    "dbp_high": ("dbp_mmhg", "diastolic_bp", True),
}


# An 8-h night and a 24-h day take minutes even at hundreds of times real time.
LONG = {"sleep": 900, "normal-day": 1800}


@pytest.mark.slow
@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.timeout(LONG.get(name, 300)))
                                  for name in SCENARIOS])
def test_scenario_raises_exactly_its_alarms(name, broker, mqtt_subscriber, mqtt_publish,
                                            processes, tmp_path):
    expect = SCENARIOS[name]
    rec, alarms, vitals = run_scenario(name, expect, broker, mqtt_subscriber, mqtt_publish,
                                       processes, tmp_path)
    raised = [a for a in alarms if a["event"] == "raised"]
    summary = [(a["device_time_s"], a["condition"], a["event"], a["value"]) for a in alarms
               if a["event"] != "reminder"]
    assert {a["condition"]: a["priority"] for a in raised} == expect.alarms, summary
    assert len(raised) == len(expect.alarms), f"one alarm per condition: {summary}"
    cleared = {a["condition"]: a for a in alarms if a["event"] == "cleared"}
    assert sorted(cleared) == sorted(expect.cleared), summary

    for alarm in raised:
        condition, t = alarm["condition"], alarm["device_time_s"]
        if condition in RULES:  # against the ground truth
            series, vital, above = RULES[condition]
            truth = sustained(getattr(rec.truth, series))
            onset = first_crossing(truth, alarm["limit"], above)
            assert onset <= t <= onset + MAX_DELAY_S[vital], (condition, onset, t)
            if condition in cleared:
                hysteresis = getattr(LIMITS, condition).hysteresis
                back = settled(truth, alarm["limit"] - hysteresis if above
                               else alarm["limit"] + hysteresis, not above, after=t)
                end = cleared[condition]["device_time_s"]
                assert back <= end <= back + MAX_CLEAR_S[vital], (condition, back, end)
        elif condition in GLUCOSE:  # on the very first reading past the limit: no delay
            key, above = GLUCOSE[condition]
            readings = [v for v in vitals if v["vital"] == "glucose"]
            first = next(v for v in readings if (v["details"][key] if key else v["value"])
                         is not None and _past(v["details"][key] if key else v["value"],
                                               alarm["limit"], above))
            assert first["device_time_s"] == t, (condition, first, t)
    if name == "hypoglycaemia":
        check_urgent_low_soon(rec, alarms, vitals)


GLUCOSE = {  # condition -> (detail holding the reading, "" for the value; above the limit)
    "glucose_urgent_low": ("", False),
    "glucose_low": ("", False),
    "glucose_high": ("", True),
    "glucose_rising": ("trend_mg_dl_per_min", True),
    "glucose_falling": ("trend_mg_dl_per_min", False),
}


def _past(value: float, limit: float, above: bool) -> bool:
    return value > limit if above else value <= limit


def check_urgent_low_soon(rec: Recording, alarms: list[dict], vitals: list[dict]) -> None:
    """The predictive alarm comes before the CGM reads 55 mg/dL, at least a reading ahead.

    Its promise is about the sensor reading, as Dexcom's Urgent Low Soon's (sensor glucose
    <= 55 within 20 min), and the model card scores it so on real people. It is not held to
    the simulator's plasma glucose: in this slow fall the simulated CGM reads 55 19-24 min
    after the plasma does, so warning before the plasma means calling lows 25-45 min ahead
    from a reading near 70. glucose 1.x's forecast rule (20-min forecast <= 60) did, at 1.8x
    the false alerts of glucose 2.0.0's risk on real held-out people."""
    soon = next(a for a in alarms if a["condition"] == "glucose_urgent_low_soon")
    first_55 = next(v["device_time_s"] for v in vitals
                    if v["vital"] == "glucose" and v["value"] <= 55)
    lead_s = first_55 - soon["device_time_s"]
    assert lead_s >= 5 * 60, f"warned only {lead_s / 60:.0f} min ahead"
    urgent = next(a for a in alarms if a["condition"] == "glucose_urgent_low")
    assert soon["device_time_s"] < urgent["device_time_s"]
    # The risk limit is the configured one (tuned on real people; a probability).
    assert soon["limit"] == LIMITS.glucose_urgent_low_soon.threshold
    assert soon["value"] > soon["limit"] and soon["priority"] == "high"
    assert soon["unit"] == "probability"


@pytest.mark.slow
@pytest.mark.parametrize("seed", [2, 3])
def test_urgent_low_soon_fires_before_glucose_reaches_55(seed, broker, mqtt_subscriber,
                                                          mqtt_publish, processes, tmp_path):
    """The predictive alarm on other subjects of the hypoglycaemia scenario (seed 1 is in
    the scenario test above)."""
    rec, alarms, vitals = run_scenario("hypoglycaemia", SCENARIOS["hypoglycaemia"], broker,
                                       mqtt_subscriber, mqtt_publish, processes, tmp_path,
                                       seed=seed)
    check_urgent_low_soon(rec, alarms, vitals)
