"""The pipeline: threads, bounded queues and the stage that runs pre-processing and the engine.

:mod:`.runner` wires cameras -> stage -> post-processing -> publisher (the only module that knows every
room); :mod:`.stages` holds the stage interface and the CPU stage; :mod:`.cuda_stage` the CUDA one
(pinned frame ring, GPU letterbox, engine on one stream), imported only when a GPU engine runs.
"""
