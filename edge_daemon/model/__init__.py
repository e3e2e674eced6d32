"""The model's contract, read-only: identity and metadata (:mod:`.info`, :mod:`.onnxinfo`), the input it
takes (:mod:`.preprocess`: letterbox to the model's input size) and how its output is decoded
(:mod:`.postprocess`: the detect head, NMS, boxes back in frame pixels)."""
