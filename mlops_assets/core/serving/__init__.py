"""The serving runtime's records: prediction ids, the inference journal and log (written by the service, read by
the monitor) and the feedback that labels a prediction. It may import ``common``, ``data`` and ``model``."""
