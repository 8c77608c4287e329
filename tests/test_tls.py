"""TLS to the broker (issue #12 case 7), through the real CLI against a real mosquitto TLS
listener with certificates made by the openssl CLI for this session (conftest)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tls_listener
from e2e import ROOT

from deploy.broker import PrivateBroker, free_port


def write_config(tmp_path: Path, port: int, mqtt: str) -> Path:
    path = tmp_path / "edge.toml"
    path.write_text(f'node = "ward-7"\nmodels_dir = "{ROOT / "models"}"\n'
                    f"[mqtt]\nport = {port}\nstatus_interval_s = 1\n"
                    f"outbox = '{tmp_path / 'outbox.sqlite'}'\n{mqtt}")
    return path


def edge(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge", *args], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)


def one_line_error(result: subprocess.CompletedProcess, code: int) -> str:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    return line


def mutual(certs, **override: str) -> str:
    keys = {"ca_file": certs.ca, "cert_file": certs.client_cert, "key_file": certs.client_key}
    keys |= override
    return "tls = true\n" + "".join(f"{k} = '{v}'\n" for k, v in keys.items() if v)


def test_mutual_tls_connects_and_publishes(certificates, mosquitto_path, mqtt_subscriber,
                                           processes, tmp_path):
    plain = free_port()
    with PrivateBroker(extra_config=tls_listener(certificates, plain_port=plain)) as private:
        watcher = PrivateBroker(plain)  # the same mosquitto, seen through its plain listener
        sub = mqtt_subscriber("wearable/#", broker=watcher)
        processes.start("-m", "edge", "run", "--config",
                        str(write_config(tmp_path, private.port, mutual(certificates))))
        status = sub.wait_for("wearable/ward-7/status", timeout=60).json()
        assert status["state"] == "online"


@pytest.mark.parametrize(("wrong_name", "override", "needle"), [
    (True, {}, "mismatch"),  # the broker's certificate names another host
    (False, {"ca_file": "another CA"}, "certificate"),  # signed by another CA
])
def test_a_tls_failure_is_reported_as_tls(certificates, mosquitto_path, tmp_path, wrong_name,
                                          override, needle):
    if override:  # a CA that did not sign the broker's certificate: the client's own
        override = {"ca_file": certificates.client_cert}
    extra = tls_listener(certificates, wrong_name=wrong_name, plain_port=free_port())
    with PrivateBroker(extra_config=extra) as private:
        config = write_config(tmp_path, private.port, mutual(certificates, **override))
        line = one_line_error(edge("run", "--log-level", "error", "--config", str(config)), 1)
    assert "TLS handshake with the MQTT broker" in line and needle in line, line
    assert "username/password" not in line


def test_a_missing_client_certificate_is_reported_as_tls(certificates, mosquitto_path,
                                                          tmp_path):
    extra = tls_listener(certificates, plain_port=free_port())
    with PrivateBroker(extra_config=extra) as private:
        config = write_config(tmp_path, private.port,
                              mutual(certificates, cert_file="", key_file=""))
        line = one_line_error(edge("run", "--log-level", "error", "--config", str(config)), 1)
    assert line.startswith("wearable-edge: error: TLS:") and "cert_file/key_file" in line, line


def test_server_name_check_can_be_turned_off(certificates, mosquitto_path, mqtt_subscriber,
                                             processes, tmp_path):
    plain = free_port()
    extra = tls_listener(certificates, wrong_name=True, plain_port=plain)
    with PrivateBroker(extra_config=extra) as private:
        sub = mqtt_subscriber("wearable/#", broker=PrivateBroker(plain))
        mqtt = mutual(certificates) + "tls_check_hostname = false\n"
        processes.start("-m", "edge", "run", "--config",
                        str(write_config(tmp_path, private.port, mqtt)))
        assert sub.wait_for("wearable/ward-7/status", timeout=60).json()["state"] == "online"


@pytest.mark.parametrize(("mqtt", "needles"), [
    ("tls = true\nca_file = 'nope/ca.pem'\n", ["'mqtt.ca_file'", "nope/ca.pem",
                                                "does not exist", "CA certificate"]),
    ("ca_file = 'x.pem'\n", ["'mqtt.ca_file'", "TLS is off", "tls = true"]),
    ("tls = true\ncert_file = '{cert}'\n", ["'mqtt.key_file'", "is required"]),
    ("tls = true\ncert_file = '{cert}'\nkey_file = '{ca}'\n",
     ["'mqtt.cert_file'/'mqtt.key_file'", "cannot be loaded"]),
])
def test_tls_config_errors_name_the_key_and_the_fix(certificates, tmp_path, mqtt, needles):
    mqtt = mqtt.format(cert=certificates.client_cert, ca=certificates.ca)
    line = one_line_error(edge("check", "--config",
                               str(write_config(tmp_path, free_port(), mqtt))), 2)
    for needle in needles:
        assert needle in line, line


def test_watch_reaches_a_tls_broker_with_the_configs_certificates(certificates, mosquitto_path,
                                                                  tmp_path):
    """`wearable-edge watch --config` uses [mqtt]'s TLS keys like the runtime does."""
    with PrivateBroker(extra_config=tls_listener(certificates, plain_port=free_port())) as tls:
        config = write_config(tmp_path, tls.port, mutual(certificates))
        proc = subprocess.Popen([sys.executable, "-m", "edge", "watch", "--config", str(config)],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            assert proc.stdout is not None
            assert "watching wearable/ward-7/status" in proc.stdout.readline()
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
