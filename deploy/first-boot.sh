#!/usr/bin/env bash
# Provision one board: write its names (and, if asked, a new operator) into
# /etc/wearable-edge/edge.toml, then restart the runtime if it is running. Safe to run again
# (it only sets keys). install.sh puts a copy at /opt/wearable-edge/first-boot.sh.
#
#   sudo /opt/wearable-edge/first-boot.sh --node ward3-bed12 --device wrist-1 [--operator ward-phone]
#
# or from the environment, e.g. in Raspberry Pi Imager's firstrun.sh or cloud-init:
#
#   WEARABLE_NODE=ward3-bed12 WEARABLE_DEVICE=wrist-1 /opt/wearable-edge/first-boot.sh
#
# Arguments win over the environment. Without a node name, a board still named "edge-1" (the
# shipped default) takes its hostname.
# Names become MQTT topic levels (wearable/<node>/<device>/...): no '/', '+' or '#'.
# --operator adds an operator with a new random secret, printed once here and stored only in
# the config (an existing name is refused: python -m deploy.provision ... --replace).
# Every edit is validated with the runtime's own loader; nothing is written if it is rejected.
set -euo pipefail

NODE=${WEARABLE_NODE:-}
DEVICE=${WEARABLE_DEVICE:-}
OPERATOR=${WEARABLE_OPERATOR:-}
CONFIG=${WEARABLE_CONFIG:-/etc/wearable-edge/edge.toml}
PYTHON=${WEARABLE_PYTHON:-/opt/wearable-edge/venv/bin/python}
SERVICE=wearable-edge
RESTART=1

usage() {
    cat <<EOF
usage: $0 [--node NAME] [--device NAME] [--operator NAME] [--config FILE] [--no-restart]

  --node NAME     this board's name in topics (env WEARABLE_NODE; default: the hostname)
  --device NAME   the first wearable's name in topics (env WEARABLE_DEVICE)
  --operator NAME add an operator (e.g. ward-phone) with a new secret, shown once
                  (env WEARABLE_OPERATOR)
  --config FILE   the config to edit (env WEARABLE_CONFIG; default $CONFIG)
  --no-restart    do not restart the $SERVICE service
EOF
}

die() { printf 'first-boot.sh: error: %s\n' "$*" >&2; exit 1; }

while (($#)); do
    case $1 in
        --node | --device | --operator | --config)
            (($# >= 2)) || die "$1 needs a value"
            case $1 in
                --node) NODE=$2 ;;
                --device) DEVICE=$2 ;;
                --operator) OPERATOR=$2 ;;
                --config) CONFIG=$2 ;;
            esac
            shift 2
            continue
            ;;
        --no-restart) RESTART=0 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
    shift
done

[[ -f $CONFIG ]] || die "$CONFIG not found: run deploy/install.sh first"
[[ -x $PYTHON ]] || die "$PYTHON not found: run deploy/install.sh first (or set WEARABLE_PYTHON)"
[[ -w $CONFIG ]] || die "cannot write $CONFIG: run as root (sudo)"

assignments=()
if [[ -z $NODE ]]; then
    # Only replace the shipped default: a re-run with just --operator keeps the earlier name.
    [[ $("$PYTHON" -m deploy.provision "$CONFIG" --get node) == edge-1 ]] && NODE=$(hostname -s)
fi
[[ -n $NODE ]] && assignments+=("node=$NODE")
[[ -n $DEVICE ]] && assignments+=("devices.name=$DEVICE")

((${#assignments[@]})) || [[ -n $OPERATOR ]] || die "nothing to set: give --node, --device or --operator"

# Validates against the runtime's own config rules; writes atomically or not at all.
if ((${#assignments[@]})); then
    "$PYTHON" -m deploy.provision "$CONFIG" "${assignments[@]}"
    printf 'provisioned %s: %s\n' "$CONFIG" "${assignments[*]}"
fi
if [[ -n $OPERATOR ]]; then
    "$PYTHON" -m deploy.provision "$CONFIG" --add-operator "$OPERATOR"
fi

if ((RESTART)) && [[ -d /run/systemd/system ]]; then
    # try-restart: only if it is running; a stopped service stays stopped.
    systemctl try-restart "$SERVICE"
fi
