"""Monitoring: whylogs profiles and the drift between them, the profile layout, and accuracy and bias on labelled
production traffic. It may import every other room (``common``, ``data``, ``model``, ``registry``, ``serving``)."""
