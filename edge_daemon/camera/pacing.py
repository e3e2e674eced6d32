"""Real-time pacing of a file camera (``realtime: true``): frames at the file's own rate on a clock that,
like a camera's, does not stop for a late reader.

A camera captures on its own clock and holds a few frames in its buffers while the reader is late
(V4L2 queues four with OpenCV's default; an RTSP stream waits in the socket); a reader that was held up
briefly gets them back to back and is on time again. Falling further behind than a camera buffers loses
frames: the clock moves on to now. A stand-in that restarted its clock at every late read (as the
sources did until the streams bench showed it) delivers fewer frames per second than the camera it
stands in for whenever its thread is woken late, which a loaded host does to every thread now and then.
"""

from __future__ import annotations

import time
from collections.abc import Callable

SLACK_FRAMES = 4  # how many frames behind a late reader may catch up on (V4L2's four buffers)


class Pacer:
    """``wait()`` after each frame: sleeps until the next frame is due (nothing when ``period`` is 0)."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.period = 0.0
        self._clock = clock
        self._sleep = sleep
        self._next_due = 0.0

    def start(self, fps: float | None) -> None:
        """Pace at ``fps`` from now (no pacing for None, 0 or an implausible rate)."""
        self.period = 1.0 / fps if fps and 0 < fps < 1000 else 0.0
        self._next_due = self._clock()

    def wait(self) -> None:
        if not self.period:
            return
        self._next_due += self.period
        now = self._clock()
        delay = self._next_due - now
        if delay > 0:
            self._sleep(delay)
        elif delay < -SLACK_FRAMES * self.period:  # more late than a camera buffers: those frames are lost
            self._next_due = now
