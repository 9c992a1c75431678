"""The model registry: versions in BentoML's model store, the production pointer and every transition of it, the
rules that protect a release and the promotion rule. It may import ``common``, ``data`` and ``model``."""
