"""Build stage (asset group ``build``): labelled images → splits (checked) → model → ONNX → evaluation → registry,
one module per step. (Not named ``build/``: stock Python ``.gitignore`` files ignore that folder.)"""
