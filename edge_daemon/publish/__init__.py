"""Publishing detections: the versioned payload and the MQTT client."""
