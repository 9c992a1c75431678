"""The tags that say what kind of work a run is: the run queue, the jobs and the drift sensor agree on them.

The run queue allows one ``training`` run at a time (``dagster.yaml``, ``deploy/dagster.yaml``), and the drift
sensor waits while one is in flight.
"""

RUN_KIND_TAG = "mlops/kind"  # training | release | monitoring
TRIGGER_TAG = "mlops/trigger"  # drift, for runs the drift sensor launched
