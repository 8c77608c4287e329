"""`make bench`: the figures the issues ask for, as one JSON object on stdout.

Every figure is a median over repeats and comes with the peer measured in the same run
(shared, noisy machines: compare ratios, not absolute numbers across runs).

    python -m bench [--minutes 20] [--cycles 12] [--speed 20] [--devices 1,4,16]

`devices` is bench/devices.py (scaling with 1, 4, 16 wearables, real time and replay): its
table goes to stderr, its figures into the JSON and bench/results/devices.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tty
from dataclasses import replace
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt

from bench import devices as devices_bench
from deploy.broker import PrivateBroker
from device_sim.physiology import simulate
from device_sim.scenarios import CHANNELS, Scenario, get_scenario
from device_sim.stream import frames
from edge.config import Config
from edge.infer import load_model
from edge.replay import replay
from edge.runtime import load_models
from wire import encode_frame

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def bench_replay(recording_path: Path, repeats: int) -> dict:
    """Replay with every model (issue #5: all three, one device), and with the HR model alone
    as the peer, interleaved run by run so both see the same machine load."""
    configs = {"all_models": Config(models_dir=str(MODELS)),
               "hr_only": Config(models_dir=str(MODELS), models=["hr"])}
    loaded = {name: load_models(config) for name, config in configs.items()}
    runs: dict[str, list] = {name: [] for name in configs}
    for _ in range(repeats):
        for name, config in configs.items():
            runs[name].append(replay(config, loaded[name], recording_path, None))

    def summary(name: str) -> dict:
        done = runs[name]
        return {"models": [f"{m.manifest.name}@{m.manifest.version}" for m in loaded[name]],
                "device_seconds": round(done[0].device_seconds, 1),
                "wall_seconds_median": round(statistics.median(r.wall_seconds for r in done), 3),
                "speed_x_realtime_median": round(statistics.median(r.speed for r in done), 1),
                "speed_x_realtime_runs": [round(r.speed) for r in done],
                "messages": done[0].messages}

    result = {name: summary(name) for name in configs}
    result["all_vs_hr_only_speed_ratio"] = round(
        result["all_models"]["speed_x_realtime_median"]
        / result["hr_only"]["speed_x_realtime_median"], 3)
    return result


def bench_heartpy(ppg: np.ndarray, rate: float, repeats: int) -> dict:
    """HeartPy as its docs recommend: band-pass, then process_segmentwise. (On the raw PPG
    it rejects nearly every segment at once, which would time nothing.)"""
    import warnings

    import heartpy

    walls = []
    for _ in range(repeats):
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clean = heartpy.filter_signal(ppg, [0.5, 4.0], sample_rate=rate, order=3,
                                          filtertype="bandpass")
            _, measures = heartpy.process_segmentwise(
                clean, sample_rate=rate, segment_width=8, segment_overlap=7 / 8)  # 1 s hop
        walls.append(time.perf_counter() - start)
    bpm = np.asarray(measures.get("bpm", []), dtype=float)
    return {"wall_seconds_median": round(statistics.median(walls), 3),
            "speed_x_realtime_median": round(len(ppg) / rate / statistics.median(walls), 1),
            "segments_with_hr": int(np.isfinite(bpm).sum()),
            "median_hr_bpm": round(float(np.nanmedian(bpm)), 1) if bpm.size else None}


def bench_inference(n: int) -> dict:
    model = load_model(MODELS / "hr.json")
    rng = np.random.default_rng(0)
    shape = model.manifest.input.shape[1:]
    features = rng.random(shape).astype(np.float32)
    for _ in range(50):
        model.predict(features)
    times = []
    for _ in range(n):
        start = time.perf_counter_ns()
        model.predict(features)
        times.append((time.perf_counter_ns() - start) / 1000)
    return {"backend": model.backend, "model_bytes": (MODELS / "hr.tflite").stat().st_size,
            "calls": n, "latency_us_median": round(statistics.median(times), 1),
            "latency_us_p99": round(percentile(times, 99), 1)}


class Viewer:
    """Subscriber recording arrival times of alarms, vitals and status."""

    def __init__(self, broker: PrivateBroker) -> None:
        self.lock = threading.Lock()
        self.arrivals: list[tuple[float, str, dict]] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-viewer")
        self.client.on_connect = lambda c, *_: c.subscribe("wearable/#", qos=1)
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        now = time.perf_counter()
        with self.lock:
            self.arrivals.append((now, msg.topic, json.loads(msg.payload)))

    def wait_for(self, test, timeout: float) -> float | None:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            with self.lock:
                for arrival, topic, payload in self.arrivals:
                    if test(topic, payload):
                        return arrival
            time.sleep(0.005)
        return None

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def bench_end_to_end(cycles: int, speed: float) -> dict:
    """Frame written on a pseudo-terminal -> alarm (and vitals) at an MQTT subscriber."""
    segments = []
    for _ in range(cycles):
        segments += [(20, 75), (20, 150)]
    segments.append((25, 75))
    recording = simulate(Scenario.custom(segments, name="bench-cycles"), seed=11)
    sent = [(t, f.channel, f.timestamp_us / 1e6 + (len(f.samples) - 1) / f.sample_rate_hz,
             encode_frame(f)) for t, f in frames(recording)]
    master, slave = os.openpty()
    tty.setraw(slave)  # a serial line: no echo, no newline translation
    pty_path = os.ttyname(slave)
    with PrivateBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "edge.toml"
        config.write_text(
            f'node = "bench"\nmodels_dir = "{MODELS}"\n[mqtt]\nport = {broker.port}\n'
            f'outbox = "{tmp}/outbox.sqlite"\n[[devices]]\nname = "wrist"\nport = "{pty_path}"\n')
        viewer = Viewer(broker)
        time.sleep(0.3)
        launched = time.perf_counter()
        edge = subprocess.Popen([sys.executable, "-m", "edge", "run", "--config", str(config)],
                                cwd=ROOT, stderr=subprocess.DEVNULL)
        ready = viewer.wait_for(lambda topic, p: topic.endswith("/status")
                                and p["state"] == "online", 30)
        if ready is None:
            edge.kill()
            raise SystemExit("bench: the runtime did not come online within 30 s")
        written = []
        start = time.perf_counter()
        for send_time, channel, end_time, data in sent:
            delay = start + send_time / speed - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            os.write(master, data)
            written.append((time.perf_counter(), channel, end_time))
        time.sleep(1.0)
        with open(f"/proc/{edge.pid}/status") as status:
            rss_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))
        edge.send_signal(signal.SIGTERM)
        edge.wait(timeout=15)
        viewer.close()
    os.close(master)
    os.close(slave)

    model_rate = load_model(MODELS / "hr.json").manifest.sample_rate_hz

    def completing_write(t_end: float) -> float:
        """When the last frame the window ending at t_end needed was written."""
        last_sample = t_end - 1 / model_rate - 1e-6
        needed = {}
        for wall, channel, end_time in written:
            if end_time >= last_sample and channel not in needed:
                needed[channel] = wall
        return max(needed.values())

    alarm_ms, vitals_ms = [], []
    for arrival, topic, payload in viewer.arrivals:
        if topic.endswith("/alarms") or topic.endswith("/vitals"):
            latency = (arrival - completing_write(payload["device_time_s"])) * 1000
            (alarm_ms if topic.endswith("/alarms") else vitals_ms).append(latency)
    return {
        "stream_speed_x_realtime": speed,
        "start_to_ready_s": round(ready - launched, 3),
        "runtime_peak_rss_mb": round(rss_kb / 1024, 1),
        "alarms": len(alarm_ms),
        "alarm_latency_ms_p50": round(percentile(alarm_ms, 50), 2),
        "alarm_latency_ms_p99": round(percentile(alarm_ms, 99), 2),
        "vitals": len(vitals_ms),
        "vitals_latency_ms_p50": round(percentile(vitals_ms, 50), 2),
        "vitals_latency_ms_p99": round(percentile(vitals_ms, 99), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=20, help="recording length to replay")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cycles", type=int, default=12, help="tachycardia episodes, e2e")
    parser.add_argument("--speed", type=float, default=20, help="e2e stream pacing")
    parser.add_argument("--devices", type=devices_bench.counts_arg, default=[1, 4, 16],
                        help="device counts for the scaling bench (bench/devices.py)")
    parser.add_argument("--no-devices", action="store_true",
                        help="skip the scaling bench (about 6 minutes)")
    args = parser.parse_args(argv)

    log(f"simulating a {args.minutes:g}-minute 'normal' recording, every channel")
    scenario = replace(get_scenario("normal").with_duration(args.minutes * 60),
                       channels=CHANNELS)
    recording = simulate(scenario, seed=7)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "normal.bin"
        with path.open("wb") as out:
            for _, frame in frames(recording):
                out.write(encode_frame(frame))
        log("replay (the full runtime pipeline, one device): all models, then HR alone")
        ours = bench_replay(path, args.repeats)
    log("HeartPy process_segmentwise on the same PPG (8 s windows, 1 s hop)")
    heartpy = bench_heartpy(recording.ppg, recording.ppg_rate, max(1, args.repeats // 2))
    log("int8 HR model inference")
    inference = bench_inference(2000)
    log(f"end to end over a pty and mosquitto ({args.cycles} tachycardia episodes)")
    e2e = bench_end_to_end(args.cycles, args.speed)
    scaling = None
    if not args.no_devices:
        log(f"scaling with {', '.join(map(str, args.devices))} devices (bench/devices.py)")
        scaling = devices_bench.run(args.devices, interval=40.0, warmup=10.0,
                                    minutes=args.minutes, repeats=3)
        print(devices_bench.table(scaling), file=sys.stderr, flush=True)
        log(f"written to {devices_bench.save(scaling).relative_to(ROOT)}")
    result = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "replay": ours,
        "heartpy": heartpy,
        "replay_vs_heartpy_speed_ratio": round(
            heartpy["wall_seconds_median"] / ours["hr_only"]["wall_seconds_median"], 2),
        "hr_inference": inference,
        "end_to_end": e2e,
        "devices": scaling,
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
