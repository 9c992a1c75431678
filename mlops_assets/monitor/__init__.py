"""Monitor: whylogs profiles of the training data and of served traffic, and the drift between them."""
