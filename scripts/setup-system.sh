#!/usr/bin/env bash
# Debian/Ubuntu packages the demo and the tests need: mosquitto (broker, started by them on a free port),
# python3-venv, systemd (for systemd-analyze, which checks systemd/edge-daemon.service), Chromium (the live
# view's browser test), and GStreamer's
# RTSP server (a real camera stream that the drop-out tests kill and restart). Installs only what is missing; needs root or sudo.
set -euo pipefail
need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
command -v dpkg-deb >/dev/null 2>&1 || need+=(dpkg)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)   # the unit file's tests
command -v openssl >/dev/null 2>&1 || need+=(openssl)            # certificates for the TLS tests
command -v chromium >/dev/null 2>&1 || need+=(chromium)          # the live view's headless-browser test
# The RTSP drop-out tests run GStreamer's RTSP server under the system Python (PyGObject).
/usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0')" >/dev/null 2>&1 ||
  need+=(python3 python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good)
# GStreamer cameras through the appsink (the gstreamer extra builds PyGObject against girepository-1.0),
# with Debian's stand-ins for the NVIDIA elements: FFmpeg's decoders (gstreamer1.0-libav) and the
# H.264/H.265 parsers (plugins-bad).
dpkg -s libgirepository1.0-dev libcairo2-dev gir1.2-gst-plugins-base-1.0 gstreamer1.0-libav \
  gstreamer1.0-plugins-bad pkg-config gcc python3-dev >/dev/null 2>&1 ||
  need+=(libgirepository1.0-dev libcairo2-dev gir1.2-gst-plugins-base-1.0 gstreamer1.0-libav
    gstreamer1.0-plugins-bad pkg-config gcc python3-dev)
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing Debian packages: ${need[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian starts a system-wide broker on 1883 when it installs mosquitto; ours run on their own ports.
