"""Govern stage: the ops a person's decision runs (approve or reject a version, compare it again, roll back); they
change the registry through its own transitions, so every rule it enforces holds here too."""
