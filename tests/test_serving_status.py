"""The service's status files: what Dagster reads when it cannot reach the service (the Docker stack)."""

from __future__ import annotations

import pytest

from mlops_assets.core.serving.serving_status import STALE_SECONDS, read_statuses, status_path, write_status


def status(version, loaded_at="2026-12-03T08:00:00", **extra):
    return {"version": version, "tag": f"image_classifier:{version}", "loaded_at": loaded_at, "source": "production",
            "production_version": version, "swap_error": None, "worker_pid": 1, **extra}


def test_the_fresh_workers_agree_and_the_newest_load_is_reported(tmp_path):
    write_status(status_path(tmp_path, "a", 1), status("v2", "2026-12-03T08:00:01"), now=1000.0)
    write_status(status_path(tmp_path, "b", 2), status("v2", "2026-12-03T08:00:02"), now=1000.0)
    served = read_statuses(tmp_path, now=1010.0).served()
    assert served["version"] == "v2" and served["loaded_at"] == "2026-12-03T08:00:02" and served["workers"] == 2


def test_a_worker_that_stopped_writing_drops_out(tmp_path):
    write_status(status_path(tmp_path, "old", 1), status("v1"), now=1000.0)
    write_status(status_path(tmp_path, "new", 2), status("v2"), now=1000.0 + STALE_SECONDS)
    assert read_statuses(tmp_path, now=1001.0 + STALE_SECONDS).served()["version"] == "v2"
    assert "no worker of the service has reported" in read_statuses(tmp_path, now=1000.0 + 3 * STALE_SECONDS).served()


@pytest.mark.parametrize("versions, said", [(("v1", "v2"), "different versions (v1, v2)"),
                                            ((None, None), "serving no model yet")])
def test_workers_that_disagree_or_serve_nothing_are_said_not_guessed(tmp_path, versions, said):
    for index, version in enumerate(versions):
        write_status(status_path(tmp_path, "h", index), status(version), now=1000.0)
    assert said in read_statuses(tmp_path, now=1000.0).served()


def test_an_unreadable_status_file_is_skipped(tmp_path):
    write_status(status_path(tmp_path, "h", 1), status("v3"), now=1000.0)
    status_path(tmp_path, "h", 2).write_text("{half")
    assert read_statuses(tmp_path, now=1000.0).served()["version"] == "v3"
