#!/usr/bin/env bash
# Install or upgrade wearable-edge on a Raspberry Pi-class board (Raspberry Pi OS / Debian,
# 64-bit). Idempotent: run it again after `git pull` to upgrade. It never overwrites files
# meant for local edits (/etc/wearable-edge/edge.toml, the broker ACL and password file).
#
#   sudo deploy/install.sh [--with-broker] [--no-start]
#
# Details and the steps after it: docs/deploy.md.
set -euo pipefail

PREFIX=/opt/wearable-edge
VENV=$PREFIX/venv
CONF_DIR=/etc/wearable-edge
CONFIG=$CONF_DIR/edge.toml
SERVICE=wearable-edge
SERVICE_USER=wearable
STATE_DIR=/var/lib/wearable-edge
MOSQUITTO_DIR=/etc/mosquitto
PASSWD_FILE=$MOSQUITTO_DIR/wearable.passwd
ACL_FILE=$MOSQUITTO_DIR/wearable.acl
# Debian's Python, whatever python3 is first on root's PATH (pyenv, conda...): the service user
# must be able to run it, and python3-venv belongs to it.
PYTHON=/usr/bin/python3
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

WITH_BROKER=0
START=1

usage() {
    cat <<EOF
usage: sudo $0 [--with-broker] [--no-start]

  --with-broker  also install mosquitto on this board, configured by deploy/mosquitto.conf,
                 with a broker login for the runtime
  --no-start     install and enable the service, but do not (re)start it now
EOF
}

log() { printf '==> %s\n' "$*"; }
warn() { printf 'install.sh: warning: %s\n' "$*" >&2; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }

while (($#)); do
    case $1 in
        --with-broker) WITH_BROKER=1 ;;
        --no-start) START=0 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
    shift
done

# --- can this board run it at all? Checked before anything is installed -------------------------
arch=$(uname -m)
case $arch in
    aarch64 | arm64 | x86_64) ;;
    armv6l | armv7l | armhf)
        die "this is a 32-bit ARM OS ($arch): the runtime's TFLite interpreter (ai-edge-litert)
  has no wheels for it, so pip would fail. Either
  - flash Raspberry Pi OS Lite (64-bit) (any Pi 3, 4, 5 or Zero 2 W runs it), or
  - use the older tflite-runtime interpreter where it has a wheel for your Python (2.14:
    Python <= 3.11, numpy < 2): pip install \".[runtime-tflite]\" into $VENV by hand.
  docs/deploy.md, section 1." ;;
    *) die "unsupported architecture $arch: wheels exist for aarch64 and x86_64 only" ;;
esac
# Matches requires-python in pyproject.toml (tomllib); Raspberry Pi OS Bookworm has 3.11.
check_python() {
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "Python >= 3.11 is needed, found $("$PYTHON" --version 2>&1): use Raspberry Pi OS Bookworm or later"
}
if [[ -x $PYTHON ]]; then check_python; fi  # a missing python3 is installed below, then checked

[[ $EUID -eq 0 ]] || die "run it as root: sudo $0"
[[ -f $REPO/pyproject.toml && -d $REPO/edge ]] || die "$REPO does not look like a wearable-edge checkout"
command -v apt-get >/dev/null || die "this installer needs a Debian-based OS (Raspberry Pi OS)"

# --- OS packages: only what is missing, so a re-run works offline ---------------------------
packages=(python3 python3-venv)
((WITH_BROKER)) && packages+=(mosquitto mosquitto-clients)
missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi
check_python

# --- service user: serial access through group dialout ---------------------------------------
if id -u "$SERVICE_USER" >/dev/null 2>&1; then
    usermod --append --groups dialout "$SERVICE_USER"
else
    log "creating system user $SERVICE_USER"
    useradd --system --user-group --groups dialout --home-dir "$STATE_DIR" --no-create-home \
        --shell /usr/sbin/nologin --comment "wearable-edge runtime" "$SERVICE_USER"
fi

# --- the runtime, in its own venv, without TensorFlow -----------------------------------------
install -d -m 0755 "$PREFIX"
# A venv outlives neither an OS Python upgrade nor a Python the service user cannot run.
if [[ -e $VENV ]] && ! runuser -u "$SERVICE_USER" -- "$VENV/bin/python" -c '' 2>/dev/null; then
    log "recreating $VENV: its Python is gone or not usable by $SERVICE_USER"
    rm -rf "$VENV"
fi
if [[ ! -x $VENV/bin/python ]]; then
    log "creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# Build from a copy: pip builds in-tree, and root-owned build files do not belong in a
# user's checkout.
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
tar -C "$REPO" --exclude=./.git --exclude=./.venv --exclude=./build --exclude='*.egg-info' \
    -cf - . | tar -C "$build" -xf -
log "installing the runtime into $VENV (pip install \".[runtime]\")"
"$VENV/bin/python" -m pip install --quiet --upgrade "$build[runtime]"

# --- models, docs, provisioning script ---------------------------------------------------------
# Shipped artifacts: replaced on every run, so an upgrade brings the new bundles.
rm -rf "$PREFIX/models.new"
install -d -m 0755 "$PREFIX/models.new"
if compgen -G "$REPO/models/*.tflite" >/dev/null; then
    cp "$REPO"/models/*.tflite "$REPO"/models/*.json "$PREFIX/models.new/"
else
    warn "no model bundles in $REPO/models: train them on a workstation (make models) and re-run"
fi
chmod -R a+rX "$PREFIX/models.new"
rm -rf "$PREFIX/models"
mv "$PREFIX/models.new" "$PREFIX/models"
install -d -m 0755 "$PREFIX/docs"
[[ -f $REPO/docs/deploy.md ]] && install -m 0644 "$REPO/docs/deploy.md" "$PREFIX/docs/deploy.md"
install -m 0755 "$REPO/deploy/first-boot.sh" "$PREFIX/first-boot.sh"

# --- configuration: installed once, then yours -------------------------------------------------
# root-owned, readable by the service only: it may hold the broker password.
install -d -m 0750 -o root -g "$SERVICE_USER" "$CONF_DIR"
if [[ -e $CONFIG ]]; then
    log "keeping $CONFIG"
else
    log "installing the default config as $CONFIG"
    install -m 0640 -o root -g "$SERVICE_USER" "$REPO/deploy/edge.toml" "$CONFIG"
fi
# Without an operator every command is refused: no acknowledge, no BP calibration. The first
# one gets a random secret that exists only in $CONFIG and on screen, once.
operator_note=$("$VENV/bin/python" -m deploy.provision "$CONFIG" --add-operator nurse-station --if-none) \
    || die "could not add an operator to $CONFIG (see above)"

# --- udev: /dev/wearable0 ---------------------------------------------------------------------
install -D -m 0644 "$REPO/deploy/99-wearable.rules" /etc/udev/rules.d/99-wearable.rules
if command -v udevadm >/dev/null && [[ -d /run/udev ]]; then
    udevadm control --reload
    udevadm trigger --subsystem-match=tty --action=add || warn "udevadm trigger failed"
fi

# --- optional local broker ---------------------------------------------------------------------
if ((WITH_BROKER)); then
    log "configuring mosquitto ($MOSQUITTO_DIR/conf.d/wearable.conf)"
    install -d -m 0755 "$MOSQUITTO_DIR/conf.d"
    install -m 0644 "$REPO/deploy/mosquitto.conf" "$MOSQUITTO_DIR/conf.d/wearable.conf"
    if [[ ! -e $ACL_FILE ]]; then
        install -m 0600 "$REPO/deploy/mosquitto.acl" "$ACL_FILE"
    elif ! cmp -s "$REPO/deploy/mosquitto.acl" "$ACL_FILE"; then
        # Kept (it is yours), but older shipped ACLs let every reader see the commands.
        warn "keeping your $ACL_FILE; compare it with $REPO/deploy/mosquitto.acl (only the" \
            "runtime may read .../cmd; no anonymous access)"
    fi
    if grep -Eq '^[[:space:]]*(listener|port)[[:space:]]' "$MOSQUITTO_DIR/mosquitto.conf" 2>/dev/null; then
        warn "$MOSQUITTO_DIR/mosquitto.conf defines a listener too; remove it if mosquitto fails" \
            "to start with 'Address already in use'"
    fi
    # The runtime's login: a random password, hashed for mosquitto and put in edge.toml.
    (umask 077 && "$VENV/bin/python" -m deploy.provision "$CONFIG" --broker-credentials "$PASSWD_FILE")
    # mosquitto >= 2.0.16 wants its password and ACL files owned by its own user.
    chown mosquitto:mosquitto "$PASSWD_FILE" "$ACL_FILE"
    chmod 0600 "$PASSWD_FILE" "$ACL_FILE"
    if [[ -d /run/systemd/system ]]; then
        systemctl enable mosquitto
        systemctl restart mosquitto
    fi
fi

# --- systemd ------------------------------------------------------------------------------------
install -m 0644 "$REPO/deploy/$SERVICE.service" "/etc/systemd/system/$SERVICE.service"
if [[ ! -d /run/systemd/system ]]; then
    warn "systemd is not running here (a container?): unit installed but not enabled or started"
else
    systemctl daemon-reload
    systemctl enable "$SERVICE"
    if ((START)); then
        # Catch a bad config or missing models here, not in a restart loop.
        if runuser -u "$SERVICE_USER" -- "$VENV/bin/wearable-edge" check --config "$CONFIG"; then
            systemctl restart "$SERVICE"
            log "$SERVICE (re)started"
        else
            warn "$SERVICE not started: fix the problem above, then: sudo systemctl restart $SERVICE"
        fi
    fi
fi

cat <<EOF

wearable-edge is installed.
  name this board:  sudo $PREFIX/first-boot.sh --node <name> [--device <wearable name>]
  config:           $CONFIG
  service:          systemctl status $SERVICE; journalctl -u $SERVICE -f
  operator login:   sudo mosquitto_passwd $PASSWD_FILE operator && sudo systemctl reload mosquitto
  watch messages:   mosquitto_sub -h <broker> -u operator -P <password> -t 'wearable/#' -v
  watch the node:   $VENV/bin/wearable-edge watch --config $CONFIG
EOF
if [[ -n $operator_note ]]; then
    printf '\nNew operator (write the secret down now: it is not shown again):\n%s\n' "$operator_note"
fi
