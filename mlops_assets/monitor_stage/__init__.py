"""Monitor stage (asset group ``monitor``): whylogs profiles of the training data and of served traffic, the drift
between them, and accuracy on labelled traffic."""
