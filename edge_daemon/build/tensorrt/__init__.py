"""Building TensorRT plans: the key that names a plan for this device (:mod:`.keys`), the INT8 calibrators
(:mod:`.calibrator`), the network build (:mod:`.plan`) and the first-boot life cycle (:mod:`.provision`).
Importing this package imports nothing from TensorRT; its modules do, and only when TensorRT is chosen.
"""
