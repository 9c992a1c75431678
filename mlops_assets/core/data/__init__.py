"""Data: images decoded and preprocessed once, labelled folders, the pixel store, versioned datasets and splits, and
the per-image features the monitor profiles. It may import ``common``."""
