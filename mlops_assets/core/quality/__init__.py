"""Data quality: the expectations a split must meet before training (Great Expectations) and the label ledger
that catches an image relabelled or labelled twice. It may import ``common`` and ``data``."""
