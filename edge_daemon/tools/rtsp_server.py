"""A real RTSP server: GStreamer's gst-rtsp-server, from Debian's packages (or JetPack's).

Used by the RTSP tests and by ``edge-daemon bench --cameras N --source rtsp``. It runs in the system
Python, which has PyGObject (python3-gi) and the typelib (gir1.2-gst-rtsp-server-1.0), not in the
daemon's environment, so it imports nothing of the daemon:

    /usr/bin/python3 edge_daemon/tools/rtsp_server.py PORT [--clip h264|h265 FILE.mp4] [--per-client]

Serves ``rtsp://127.0.0.1:PORT/cam``: a live 320x240 test pattern at 25 FPS as RTP/JPEG, or, given a codec
and an MP4 clip of that codec, the clip's own H.264/H.265 stream (not re-encoded) at its frame rate. By
default every client shares one media (clients that join late join it where it is); ``--per-client``
gives each client its own, from the clip's start, as N separate cameras would be. Prints ``ready`` once
listening. The tests kill it with SIGKILL (a crash) and start it again on the same port.
"""

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

PIPELINE = (
    "( videotestsrc is-live=true pattern=ball "
    "! video/x-raw,format=I420,width=320,height=240,framerate=25/1 "
    "! jpegenc quality=85 ! rtpjpegpay name=pay0 pt=26 )"
)


def clip_pipeline(codec: str, clip: str) -> str:
    if codec not in ("h264", "h265") or '"' in clip:
        sys.exit(f"bad codec or clip: {codec} {clip}")
    return (
        f'( filesrc location="{clip}" ! qtdemux ! {codec}parse config-interval=-1 '
        f"! rtp{codec}pay name=pay0 pt=96 )"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description="gst-rtsp-server on 127.0.0.1:PORT/cam")
    ap.add_argument("port", type=int)
    ap.add_argument("--clip", nargs=2, metavar=("CODEC", "FILE"))
    ap.add_argument("--per-client", action="store_true", help="a media per client (default: shared)")
    args = ap.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(clip_pipeline(*args.clip) if args.clip else PIPELINE)
    factory.set_shared(not args.per_client)
    server.get_mount_points().add_factory("/cam", factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on port {args.port}")
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
