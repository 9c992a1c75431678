"""Build stage 2: blocking data-quality checks on the splits, with Great Expectations 1.x.

dagster-ge does not support GX 1.x, so the checks call GX directly through
:mod:`mlops_assets.ml.data_quality`. All six suites run in one op, so GX (seconds to import)
is set up once per run rather than once per check, and each yields its own blocking ``AssetCheckResult``:
a failed check stops training and everything downstream in the same run. Its metadata names the
failed expectation, the rows it failed on, the observed numbers, and the GX HTML report, which
is published once per splits version and suite in the artifact store (kind ``gx``).
"""

# No `from __future__ import annotations` here: @multi_asset_check (Dagster 1.13) infers the run
# config from the `config` parameter's annotation and cannot resolve it when it is a string.
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from mlops_assets.ml.data_quality import (
    CHECK_DESCRIPTIONS,
    CHECK_NAMES,
    DEFAULT_MAX_CLASS_RATIO,
    INDEX_PAGE,
    SUITE_VERSION,
    CheckResult,
    page_name,
    validate_split_directory,
    write_html_report,
)
from mlops_assets.ml.markdown import markdown_table
from mlops_assets.ml.memory import release_freed_memory
from mlops_assets.refs import SplitsRef
from resources.artifact_store import ArtifactStore


class DataQualityConfig(dg.Config):
    max_class_ratio: float = Field(
        default=DEFAULT_MAX_CLASS_RATIO,
        description="Largest train class / smallest train class above this fails class_balance (≥ 1).",
    )


def report_version(splits_version: str, max_class_ratio: float) -> str:
    """The report depends on the splits, the suite and the bound: all three name its directory."""
    return f"{splits_version}-ratio{max_class_ratio:g}-suite{SUITE_VERSION}"


def check_metadata(result: CheckResult, report_dir: Path, splits_version: str) -> dict[str, Any]:
    """What a person needs to act on a check: the failed expectations, their row counts, the report."""
    failed_md = (
        markdown_table(
            ["expectation", "unexpected rows", "of rows", "detail"],
            [
                [f.expectation, "n/a" if f.unexpected_rows is None else f.unexpected_rows, f.total_rows,
                 f.detail]
                for f in result.failed
            ],
        )
        if result.failed
        else "none"
    )
    return {
        "reason": result.reason,
        "failed_expectations": dg.MetadataValue.md(failed_md),
        "expectations_evaluated": result.expectations,
        "expectations_failed": len(result.failed),
        "unexpected_rows": result.unexpected_rows,
        "rows_validated": result.rows,
        "table": result.table,
        **result.observed,
        "splits_version": splits_version,
        "gx_report": dg.MetadataValue.path(str(report_dir / page_name(result.name))),
        "gx_report_index": dg.MetadataValue.path(str(report_dir / INDEX_PAGE)),
    }


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(name, asset="data_splits", blocking=True, description=CHECK_DESCRIPTIONS[name])
        for name in CHECK_NAMES
    ],
    name="data_quality",
    description="Great Expectations suites on the splits; any failure blocks training.",
)
def data_quality(
    context: dg.AssetCheckExecutionContext, config: DataQualityConfig, data_splits: SplitsRef,
    artifact_store: ArtifactStore,
):
    title = f"data_splits {data_splits.version}"
    report = validate_split_directory(data_splits.path, config.max_class_ratio, run_name=title)
    release_freed_memory()  # the tables (kB per image) are gone: hand back the pages glibc would keep
    report_dir = artifact_store.publish(
        "gx",
        report_version(data_splits.version, config.max_class_ratio),
        lambda d: write_html_report(report, d, title=title),
    )
    for name in CHECK_NAMES:
        result = report.checks[name]
        if not result.success:
            context.log.warning(f"data quality check {name} failed: {result.reason}")
        yield dg.AssetCheckResult(
            asset_key="data_splits",
            check_name=name,
            passed=result.success,
            description=result.reason,
            metadata=check_metadata(result, report_dir, data_splits.version),
        )


data_quality_checks = [data_quality]
