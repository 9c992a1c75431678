"""Infrastructure the code location never loads: the run launcher of the production instance.

``mlops_assets/definitions.py`` gathers every module of the stage packages (``build``, ``deploy``, ``monitor``), so
a module there is paid for at every run, sensor tick and code-server start. The Docker run launcher and its client
(dagster-docker, docker-py, requests) are needed only by the processes that launch runs, which load it from the
instance's configuration (deploy/dagster.yaml); it lives here, outside the scanned packages.
"""
