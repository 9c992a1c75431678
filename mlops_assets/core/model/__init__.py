"""The model: training and the hyper-parameter search, ONNX export and inference, metrics, plots, and a model's
signature (classes and input geometry). It may import ``common`` and ``data``."""
