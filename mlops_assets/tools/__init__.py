"""Command-line tools: the demo, the traffic simulator and the registry CLI (not stages of the lifecycle)."""
