"""edge-daemon: camera frames -> YOLO detections -> MQTT, for NVIDIA Jetson and plain Linux."""

__version__ = "0.1.0"
