"""Build: labelled images → splits (checked) → model → ONNX → evaluation → registry, one module per stage."""
