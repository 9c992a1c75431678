"""Build stage 2: blocking data-quality checks on the splits, with Great Expectations 1.x.

dagster-ge does not support GX 1.x, so the checks call GX directly through
:mod:`mlops_assets.core.quality.data_quality`. All six suites run in one op, so GX (seconds to import)
is set up once per run rather than once per check, and each yields its own blocking ``AssetCheckResult``:
a failed check stops training and everything downstream in the same run. Its metadata names the
failed expectation, the rows it failed on, the observed numbers, and the GX HTML report, which
is published once per splits version and suite in the artifact store (kind ``gx``).

The label ledger's two blocking checks (:mod:`mlops_assets.core.quality.label_integrity`) sit on ``raw_images``, one
stage earlier: a dataset version whose images changed label, or that holds one image under two labels, never reaches the
splits. The ledger (kind ``labels``, named by the ``label-ledger`` pointer) is advanced only by a version that passes.
"""

# No `from __future__ import annotations` here: @multi_asset_check (Dagster 1.13) infers the run
# config from the `config` parameter's annotation and cannot resolve it when it is a string.
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from mlops_assets.core.common.markdown import markdown_table
from mlops_assets.core.common.memory import release_freed_memory
from mlops_assets.core.data.artifacts import open_dataset, read_manifest
from mlops_assets.core.quality.data_quality import (
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
from mlops_assets.core.quality.label_integrity import (
    LABEL_CHECK_DESCRIPTIONS,
    LABEL_CHECK_NAMES,
    LabelLedger,
    LabelReview,
    advance,
    read_ledger,
    review_labels,
    write_ledger,
)
from mlops_assets.refs import DatasetRef, SplitsRef
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


LABEL_LEDGER_POINTER = "label-ledger"


class LabelLedgerConfig(dg.Config):
    accept_label_changes: str = Field(
        default="",
        description=(
            "Why images now carry another label than in earlier dataset versions (a relabelling on purpose). "
            "Empty: any such image fails label_changes. The reason is recorded in the label ledger and the gate "
            "cites it when it compares with a production model trained on the old labels."
        ),
    )


def current_label_ledger(artifact_store: ArtifactStore) -> tuple[str | None, LabelLedger]:
    """The ledger the pointer names (version, ledger), or (None, empty) before the first dataset passed."""
    version = artifact_store.read_pointer(LABEL_LEDGER_POINTER).get("version")
    if not version or not artifact_store.exists("labels", version):
        return None, LabelLedger.empty()
    return version, read_ledger(artifact_store.path("labels", version))


def label_check_metadata(review: LabelReview, ledger_version: str | None) -> dict[str, Any]:
    changes = markdown_table(
        ["image", "file", "before", "now"],
        [[c.image_hash[:12], c.source, c.before, c.after] for c in review.change_examples],
    ) if review.change_examples else "none"
    conflicts = markdown_table(
        ["image", "files", "labels"],
        [[c.image_hash[:12], "<br>".join(c.sources), " / ".join(c.labels)] for c in review.conflict_examples],
    ) if review.conflict_examples else "none"
    return {
        **review.observed,
        "images_changed_label": review.n_changed,
        "label_transitions": dg.MetadataValue.json(review.transitions),
        "changed_examples": dg.MetadataValue.md(changes),
        "images_with_two_labels": review.n_conflicts,
        "two_label_examples": dg.MetadataValue.md(conflicts),
        "ledger_version_before": ledger_version or "none",
    }


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(name, asset="raw_images", blocking=True, description=LABEL_CHECK_DESCRIPTIONS[name])
        for name in LABEL_CHECK_NAMES
    ],
    name="label_ledger",
    description=(
        "Every image's label, by content hash, against all earlier dataset versions: a changed label or an image "
        "under two labels blocks the splits and everything after them. A passing version advances the ledger."
    ),
)
def label_ledger(
    context: dg.AssetCheckExecutionContext, config: LabelLedgerConfig, raw_images: DatasetRef,
    artifact_store: ArtifactStore,
):
    dataset = open_dataset(raw_images.path)
    sources = read_manifest(raw_images.path).get("sources") or [f"row {i}" for i in range(len(dataset.rows))]
    hashes, labels = dataset.rows.hash_array(), dataset.rows.labels
    ledger_version, ledger = current_label_ledger(artifact_store)
    review = review_labels(hashes, labels, dataset.class_names, sources, ledger)
    accepted = config.accept_label_changes.strip() if review.n_changed else ""
    changes_pass = not review.n_changed or bool(accepted)
    metadata = label_check_metadata(review, ledger_version)
    if changes_pass and not review.n_conflicts:
        advanced = advance(ledger, hashes, labels, dataset.class_names, raw_images.version, review, accepted)
        version = advanced.digest()[:16]
        artifact_store.publish("labels", version, lambda d: write_ledger(d, advanced, {"parent": ledger_version}))
        artifact_store.write_pointer(LABEL_LEDGER_POINTER, {"version": version, "dataset_version": raw_images.version})
        metadata["ledger_version"] = version
        metadata["ledger_path"] = dg.MetadataValue.path(str(artifact_store.path("labels", version)))
    else:
        metadata["ledger_version"] = f"{ledger_version or 'none'} (not advanced: this version is blocked)"
    if accepted:
        metadata["accepted_relabelling"] = accepted
        context.log.warning(f"label ledger: {review.changes_reason(accepted)}")
    for name, passed, reason in (
        ("label_changes", changes_pass, review.changes_reason(accepted)),
        ("one_label_per_image", not review.n_conflicts, review.conflicts_reason()),
    ):
        if not passed:
            context.log.warning(f"label check {name} failed: {reason}")
        yield dg.AssetCheckResult(asset_key="raw_images", check_name=name, passed=passed, description=reason,
                                  metadata={"reason": reason, **metadata})


data_quality_checks = [data_quality]
label_ledger_checks = [label_ledger]
