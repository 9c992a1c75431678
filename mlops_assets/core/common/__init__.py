"""Common ground: the settings (the only module that reads the environment), crash-safe file writes, Markdown
tables, progress bars and process memory. It imports no other room."""
