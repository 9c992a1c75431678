"""The pure core: the product's logic, free of Dagster and of ``resources/``, in rooms by domain.

Each room is a package whose docstring says what belongs there and which rooms it may import; arrows point down
the list ``common`` → ``data`` → ``quality`` / ``model`` → ``registry`` / ``serving`` → ``monitoring``, never up
(``tests/test_architecture.py`` holds the contract). The stages (``mlops_assets/*_stage``), the sensors, the
resources, the Bento service and the tools import the core; the core imports none of them.
"""
