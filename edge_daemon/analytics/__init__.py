"""Analytics: tracked objects, zones, lines, events, occupancy, snapshots and motion gating.

Between the task head and the publisher: per camera, :class:`CameraAnalyzer` tracks the decoded
detections (:mod:`.tracker`, ByteTrack), turns them into events (:mod:`.scene`, pure state), draws and
keeps snapshots (:mod:`.snapshots`) and decides which per-frame messages go out (:mod:`.firehose`).
:class:`MotionGate` (:mod:`.motion`) runs before inference, on the camera's thread.
"""

from edge_daemon.analytics.camera import CameraAnalyzer, Outcome, SnapshotRef
from edge_daemon.analytics.drawer import Job, SnapshotDrawer
from edge_daemon.analytics.motion import MotionGate
from edge_daemon.analytics.scene import Event, Scene, Seen, TrackedObject
from edge_daemon.analytics.snapshots import SnapshotStore

__all__ = [
    "CameraAnalyzer",
    "Event",
    "Job",
    "MotionGate",
    "Outcome",
    "Scene",
    "Seen",
    "SnapshotDrawer",
    "SnapshotRef",
    "SnapshotStore",
    "TrackedObject",
]
