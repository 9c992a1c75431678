"""Infrastructure, apart from the lifecycle's stages: processes that must not outlive their caller, the Bento as a
process, the local stack, and the Docker run launcher of the production instance.

The tools, the test kit and the tests start processes through these modules; of the stages, only the deploy stage
imports one (``bento_server``, to build and test the Bento). The Docker run launcher and its client (dagster-docker,
docker-py, requests) are needed only by the processes that launch runs, which load it from the instance's
configuration (deploy/dagster.yaml): ``mlops_assets/definitions.py`` never imports it.
"""
