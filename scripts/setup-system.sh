#!/usr/bin/env bash
# Debian/Ubuntu packages the demo and the tests need: mosquitto (broker, started by them on a free port),
# python3-venv, and systemd (for systemd-analyze, which checks systemd/edge-daemon.service). Installs only what is missing; needs root or sudo.
set -euo pipefail
need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
command -v dpkg-deb >/dev/null 2>&1 || need+=(dpkg)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)   # the unit file's tests
command -v openssl >/dev/null 2>&1 || need+=(openssl)            # certificates for the TLS tests
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing Debian packages: ${need[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian starts a system-wide broker on 1883 when it installs mosquitto; ours run on their own ports.
