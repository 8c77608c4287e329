"""What puts the runtime on a Raspberry Pi-class board (installer, systemd unit, udev rule,
broker config, first-boot provisioning), plus a private mosquitto for tests, demo and benches."""
