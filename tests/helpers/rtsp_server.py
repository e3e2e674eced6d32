"""A real RTSP server for the drop-out tests: GStreamer's gst-rtsp-server, from Debian's packages.

Run with the system Python, which has PyGObject (python3-gi) and the typelib
(gir1.2-gst-rtsp-server-1.0): ``/usr/bin/python3 tests/helpers/rtsp_server.py PORT [h264|h265 CLIP]``.
Serves ``rtsp://127.0.0.1:PORT/cam``: a live 320x240 test pattern at 25 FPS as RTP/JPEG, or, given a codec
and an MP4 clip of that codec, the clip's own H.264/H.265 stream (not re-encoded) at its frame rate.
Prints ``ready`` once listening. Tests kill it with SIGKILL (a crash) and start it again on the same port.
"""

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
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(sys.argv[1])
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(clip_pipeline(*sys.argv[2:4]) if len(sys.argv) > 3 else PIPELINE)
    factory.set_shared(True)
    server.get_mount_points().add_factory("/cam", factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on port {sys.argv[1]}")
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
