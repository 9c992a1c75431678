"""The code location: every stage's assets and checks, the automation, the resources. It only assembles.

Each lifecycle stage with assets is a package (``build_stage``, ``deploy_stage``, ``monitor_stage``); its asset group
is the stage's name (``build``, ``deploy``, ``monitor``, which the jobs select) and the owner is the team's, set here
once for every asset rather than on each decorator.
"""

from __future__ import annotations

import dagster as dg

from mlops_assets import automation, build_stage, deploy_stage, monitor_stage
from resources.defaults import default_resources
from sensors.serving_sensor import SERVED_MODEL

OWNER = "team:ml-platform"
STAGES = {"build": build_stage, "deploy": deploy_stage, "monitor": monitor_stage}

ASSETS = dg.map_asset_specs(
    lambda spec: spec.replace_attributes(owners=[OWNER]),
    [asset for group, package in STAGES.items()
     for asset in dg.load_assets_from_package_module(package, group_name=group)],
)
ASSET_CHECKS = [check for package in STAGES.values() for check in dg.load_asset_checks_from_package_module(package)]

defs = dg.Definitions(
    # served_model: observed (by served_model_sensor), never materialised, so not among ASSETS (what runs select)
    assets=[*ASSETS, SERVED_MODEL.replace_attributes(owners=[OWNER])],
    asset_checks=ASSET_CHECKS,
    jobs=automation.JOBS,
    schedules=automation.SCHEDULES,
    sensors=automation.SENSORS,
    resources=default_resources(),
    # Runs launched from the UI (a re-materialisation, the launchpad) use the same in-process
    # executor as build_job: a process per step costs seconds of CPU each (BENCHMARKS.md).
    executor=dg.in_process_executor,
)
