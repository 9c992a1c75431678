"""Data-quality expectations on the train/val/test splits, validated with Great Expectations 1.x.

Six checks guard training, each one GX expectation suite:

- ``schema``: uint8 pixels, the manifest's geometry, integer labels indexing the class names,
  known split names, as many images as the manifest says;
- ``pixel_range``: every pixel within 0..255;
- ``no_nulls``: no NaN pixel and no missing cell;
- ``class_coverage``: every class has at least one image in every split;
- ``no_leakage``: no identical image in two different splits;
- ``class_balance``: in train, the largest class is at most ``max_class_ratio`` times the smallest.

The suites run on small pandas tables derived from the split arrays (one row per image, per
(split, class), per distinct (image, split)), so an unexpected row count is a number a person can
act on: bad images, missing classes, leaked images. Per-image aggregates (min, max, mean, NaN
count) stand in for pixel columns, which keeps thousands of 32×32×3 images as cheap as 8×8 ones;
they are computed a batch of pixels at a time, and the image hashes are the ones stored when the
images were decoded, so the checks' memory grows with the number of images, not their pixels.

Pure logic, no Dagster. ``great_expectations`` and ``pandas`` are imported inside the functions
that use them, so importing this module (and the code location) stays cheap.
"""

from __future__ import annotations

import datetime
import html
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mlops_assets.core.data.artifacts import open_split, read_manifest
from mlops_assets.core.data.pixel_store import ImageRows
from mlops_assets.core.data.splits import SPLIT_NAMES

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

CHECK_NAMES = ("schema", "pixel_range", "no_nulls", "class_coverage", "no_leakage", "class_balance")
DEFAULT_MAX_CLASS_RATIO = 10.0
# Bump when an expectation changes, so reports published for an older suite are not reused.
SUITE_VERSION = "1"
PIXEL_DTYPE = "uint8"
PIXEL_MIN, PIXEL_MAX = 0, 255
IMAGE_COLUMNS = (
    "split", "row", "label", "image_hash", "dtype", "channels", "height", "width",
    "pixel_min", "pixel_max", "pixel_mean", "n_nan",
)
# The columns that identify a row of each table in GX's list of unexpected rows.
INDEX_COLUMNS = {
    "images": ["split", "row"],
    "class_counts": ["split", "label", "class_name"],
    "image_splits": ["image_hash", "split"],
    "train_class_counts": ["label", "class_name"],
}
INDEX_PAGE = "index.html"
PARTIAL_EXAMPLES = 5

CHECK_DESCRIPTIONS = {
    "schema": "uint8 pixels, the manifest's geometry and row count, labels indexing the class names",
    "pixel_range": f"every pixel within {PIXEL_MIN}..{PIXEL_MAX}",
    "no_nulls": "no NaN pixel and no missing value in any column",
    "class_coverage": "every class has at least one image in every split",
    "no_leakage": "no identical image (same pixel bytes) in two different splits",
    "class_balance": "in train, the largest class is at most max_class_ratio times the smallest",
}


@dataclass(frozen=True)
class SplitFrames:
    """The tables the expectations run on, all derived from the split arrays.

    ``images``: one row per image (:data:`IMAGE_COLUMNS`); ``class_counts``: one row per
    (split, class), classes with no image included as 0; ``image_splits``: one row per distinct
    (image_hash, split) pair, so an image that is in two splits is two rows with the same hash.
    """

    images: pd.DataFrame
    class_counts: pd.DataFrame
    image_splits: pd.DataFrame
    class_names: list[str]
    spec: dict[str, int]
    expected_rows: int | None = None


@dataclass(frozen=True)
class FailedExpectation:
    """One expectation that did not hold, in the words the check metadata and reason use.

    ``expectation`` is the GX type with its arguments, e.g.
    ``expect_column_values_to_be_between(n_nan, min_value=0, max_value=0)``; ``unexpected_rows`` is
    None for table-level expectations (row count, column set), which fail as a whole.
    """

    expectation: str
    type: str
    column: str | None
    unexpected_rows: int | None
    total_rows: int
    detail: str

    def describe(self) -> str:
        if self.unexpected_rows is None:
            return f"{self.expectation}: {self.detail}"
        rows = f"{self.unexpected_rows} of {self.total_rows} rows"
        return f"{self.expectation} failed on {rows} ({self.detail})"


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: whether it passed, why, and the numbers behind it."""

    name: str
    success: bool
    reason: str
    table: str
    rows: int
    expectations: int
    failed: tuple[FailedExpectation, ...] = ()
    observed: dict[str, int | float | str] = field(default_factory=dict)

    @property
    def unexpected_rows(self) -> int:
        """Rows failing the worst failed expectation (0 when the check passed)."""
        return max((f.unexpected_rows or 0 for f in self.failed), default=0)


@dataclass(frozen=True)
class DataQualityReport:
    """All six check results, plus one GX Data Docs HTML page per check."""

    checks: dict[str, CheckResult]
    pages: dict[str, str]
    max_class_ratio: float

    @property
    def success(self) -> bool:
        return all(result.success for result in self.checks.values())

    @property
    def failed_checks(self) -> list[str]:
        return [name for name, result in self.checks.items() if not result.success]


def min_class_size(largest: int, max_class_ratio: float) -> int:
    """The fewest train images a class may have: largest / smallest ≤ ratio, and never none."""
    return max(1, math.ceil(largest / max_class_ratio - 1e-9))


def page_name(check: str) -> str:
    """File name of a check's GX page inside the report directory."""
    return f"{check}.html"


def open_splits(directory: str | Path) -> dict[str, ImageRows]:
    return {name: open_split(directory, name) for name in SPLIT_NAMES}


def build_frames(
    splits: Mapping[str, ImageRows | tuple[np.ndarray, np.ndarray]],
    class_names: list[str],
    spec: Mapping[str, int],
    expected_rows: int | None = None,
) -> SplitFrames:
    """Turn each split (its rows of a pixel store, or in-memory images N×C×H×W of any dtype and labels) into
    the tables GX validates."""
    import numpy as np
    import pandas as pd

    missing = [name for name in SPLIT_NAMES if name not in splits]
    if missing:
        raise ValueError(f"splits {missing} are missing; expected all of {SPLIT_NAMES}")
    n_classes = len(class_names)
    parts, count_rows = [], []
    for name in SPLIT_NAMES:
        split = splits[name]
        if not isinstance(split, ImageRows):
            images, labels = (np.asarray(a) for a in split)
            if images.ndim != 4 or len(images) != len(labels):
                raise ValueError(f"split {name}: images {images.shape} and labels {labels.shape} do not match")
            split = ImageRows.from_arrays(images, labels)
        labels = split.labels
        n = len(split)
        pixel_min, pixel_max, pixel_mean, n_nan = split.pixel_stats()
        parts.append(
            pd.DataFrame(
                {
                    "split": name,
                    "row": np.arange(n, dtype=np.int64),
                    "label": labels,
                    "image_hash": split.hash_list(),
                    "dtype": str(split.dtype),
                    "channels": split.shape[1],
                    "height": split.shape[2],
                    "width": split.shape[3],
                    "pixel_min": pixel_min,
                    "pixel_max": pixel_max,
                    "pixel_mean": pixel_mean,
                    "n_nan": n_nan,
                },
                columns=list(IMAGE_COLUMNS),
            )
        )
        in_range = labels[(labels >= 0) & (labels < n_classes)].astype(np.int64)
        counts = np.bincount(in_range, minlength=n_classes)
        count_rows += [(name, k, class_names[k], int(counts[k])) for k in range(n_classes)]
    frame = pd.concat(parts, ignore_index=True)
    return SplitFrames(
        images=frame,
        class_counts=pd.DataFrame(count_rows, columns=["split", "label", "class_name", "n_images"]),
        image_splits=frame[["image_hash", "split"]].drop_duplicates(ignore_index=True),
        class_names=list(class_names),
        spec=dict(spec),
        expected_rows=expected_rows,
    )


def frames_from_directory(directory: str | Path) -> SplitFrames:
    """The tables for a split directory written by the ``data_splits`` asset."""
    manifest = read_manifest(directory)
    counts = manifest.get("counts")
    return build_frames(
        open_splits(directory),
        class_names=list(manifest["class_names"]),
        spec=manifest["spec"],
        expected_rows=sum(int(v) for v in counts.values()) if counts else None,
    )


def validate_split_directory(
    directory: str | Path, max_class_ratio: float = DEFAULT_MAX_CLASS_RATIO, run_name: str = "data_splits"
) -> DataQualityReport:
    """Run all six checks on a split directory (one GX context, one validation per check)."""
    return validate_frames(frames_from_directory(directory), max_class_ratio, run_name)


def _suites(frames: SplitFrames, max_class_ratio: float) -> dict[str, tuple[str, pd.DataFrame, list]]:
    """check name → (table name, table, expectations)."""
    import great_expectations as gx

    e = gx.expectations
    images = frames.images
    spec = frames.spec
    schema = [
        e.ExpectTableColumnsToMatchSet(column_set=list(IMAGE_COLUMNS), exact_match=True),
        e.ExpectColumnValuesToBeInSet(column="dtype", value_set=[PIXEL_DTYPE]),
        *(
            e.ExpectColumnValuesToBeInSet(column=dim, value_set=[int(spec[dim])])
            for dim in ("channels", "height", "width")
            if dim in spec
        ),
        e.ExpectColumnValuesToBeOfType(column="label", type_="int64"),
        e.ExpectColumnValuesToBeBetween(column="label", min_value=0, max_value=len(frames.class_names) - 1),
        e.ExpectColumnValuesToBeInSet(column="split", value_set=list(SPLIT_NAMES)),
    ]
    if frames.expected_rows is not None:
        schema.append(e.ExpectTableRowCountToEqual(value=int(frames.expected_rows)))
    pixel_range = [
        e.ExpectColumnValuesToBeBetween(column=col, min_value=PIXEL_MIN, max_value=PIXEL_MAX)
        for col in ("pixel_min", "pixel_max")
    ]
    no_nulls = [
        e.ExpectColumnValuesToBeBetween(column="n_nan", min_value=0, max_value=0),
        *(e.ExpectColumnValuesToNotBeNull(column=col) for col in IMAGE_COLUMNS if col != "n_nan"),
    ]
    coverage = [e.ExpectColumnValuesToBeBetween(column="n_images", min_value=1)]
    leakage = [e.ExpectColumnValuesToBeUnique(column="image_hash")]
    train_counts = frames.class_counts[frames.class_counts["split"] == "train"].reset_index(drop=True)
    largest = int(train_counts["n_images"].max()) if len(train_counts) else 0
    balance = [
        e.ExpectColumnValuesToBeBetween(column="n_images", min_value=min_class_size(largest, max_class_ratio))
    ]
    return {
        "schema": ("images", images, schema),
        "pixel_range": ("images", images, pixel_range),
        "no_nulls": ("images", images, no_nulls),
        "class_coverage": ("class_counts", frames.class_counts, coverage),
        "no_leakage": ("image_splits", frames.image_splits, leakage),
        "class_balance": ("train_class_counts", train_counts, balance),
    }


def validate_frames(
    frames: SplitFrames, max_class_ratio: float = DEFAULT_MAX_CLASS_RATIO, run_name: str = "data_splits"
) -> DataQualityReport:
    """Validate the tables with one ephemeral GX context and render one HTML page per check."""
    if not max_class_ratio >= 1.0:
        raise ValueError(
            f"max_class_ratio must be at least 1 (largest / smallest class), got {max_class_ratio}"
        )
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.render.renderer import ValidationResultsPageRenderer
    from great_expectations.render.view import DefaultJinjaPageView

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("data_splits")
    batch_definitions: dict[str, object] = {}
    run_id = RunIdentifier(run_name=run_name, run_time=datetime.datetime.now(datetime.UTC))
    observations = _observations(frames, max_class_ratio)
    checks: dict[str, CheckResult] = {}
    pages: dict[str, str] = {}
    for check, (table, frame, expectations) in _suites(frames, max_class_ratio).items():
        if table not in batch_definitions:
            asset = source.add_dataframe_asset(name=table)
            batch_definitions[table] = asset.add_batch_definition_whole_dataframe(table)
        suite = context.suites.add(
            gx.ExpectationSuite(
                name=check, expectations=expectations, meta={"notes": CHECK_DESCRIPTIONS[check]}
            )
        )
        validation = context.validation_definitions.add(
            gx.ValidationDefinition(name=check, data=batch_definitions[table], suite=suite)
        )
        result = validation.run(
            batch_parameters={"dataframe": frame},
            run_id=run_id,
            result_format={
                "result_format": "SUMMARY",
                "unexpected_index_column_names": INDEX_COLUMNS[table],
                "partial_unexpected_count": PARTIAL_EXAMPLES,
            },
        )
        failed = tuple(_failed_expectation(r, len(frame)) for r in result.results if not r.success)
        observed, summary = observations[check]
        reason = summary if not failed else "; ".join([summary, *(f.describe() for f in failed)])
        checks[check] = CheckResult(
            name=check,
            success=bool(result.success),
            reason=reason,
            table=table,
            rows=len(frame),
            expectations=len(result.results),
            failed=failed,
            observed=observed,
        )
        pages[check] = DefaultJinjaPageView().render(ValidationResultsPageRenderer().render(result))
    return DataQualityReport(checks=checks, pages=pages, max_class_ratio=max_class_ratio)


def _expectation_label(config) -> str:
    kwargs = {k: v for k, v in config.kwargs.items() if k not in ("batch_id", "result_format")}
    column = kwargs.pop("column", None)
    args = ([column] if column is not None else []) + [f"{k}={v!r}" for k, v in kwargs.items()]
    return f"{config.type}({', '.join(args)})"


def _failed_expectation(result, total_rows: int) -> FailedExpectation:
    """Name the failed expectation, count its unexpected rows and show a few of them."""
    config = result.expectation_config
    failure = {
        "expectation": _expectation_label(config),
        "type": config.type,
        "column": config.kwargs.get("column"),
        "total_rows": total_rows,
    }
    info = result.exception_info or {}
    if info.get("raised_exception"):
        return FailedExpectation(
            **failure, unexpected_rows=None, detail=f"raised: {info.get('exception_message')}"
        )
    details = dict(result.result or {})
    if "unexpected_count" not in details:
        return FailedExpectation(
            **failure, unexpected_rows=None, detail=f"observed {details.get('observed_value')!r}"
        )
    examples = details.get("partial_unexpected_index_list") or details.get("partial_unexpected_list") or []
    shown = ", ".join(
        " ".join(f"{k}={v}" for k, v in ex.items()) if isinstance(ex, dict) else repr(ex)
        for ex in examples[:PARTIAL_EXAMPLES]
    )
    unexpected = int(details["unexpected_count"])
    return FailedExpectation(**failure, unexpected_rows=unexpected, detail=f"e.g. {shown}")


def _observations(
    frames: SplitFrames, max_class_ratio: float
) -> dict[str, tuple[dict[str, int | float | str], str]]:
    """The numbers behind each check, and the sentence that states them, computed with pandas."""
    images, counts, pairs = frames.images, frames.class_counts, frames.image_splits
    names = frames.class_names
    n = len(images)
    dtypes = ",".join(sorted(images["dtype"].astype(str).unique())) or "none"
    geometry = images[["channels", "height", "width"]].itertuples(index=False)
    shapes = ",".join(sorted({f"{c}×{h}×{w}" for c, h, w in geometry})) or "none"
    labels = images["label"]
    label_range = f"{labels.min()}..{labels.max()}" if n else "none"
    schema: dict[str, int | float | str] = {
        "images": n, "dtype": dtypes, "shape": shapes, "n_classes": len(names), "label_range": label_range,
    }
    if frames.expected_rows is not None:
        schema["expected_images"] = int(frames.expected_rows)

    lo, hi = images["pixel_min"].min(), images["pixel_max"].max()
    out_of_range = int(((images["pixel_min"] < PIXEL_MIN) | (images["pixel_max"] > PIXEL_MAX)).sum())
    pixel_range = {
        "observed_pixel_min": float(lo) if n and lo == lo else "n/a",
        "observed_pixel_max": float(hi) if n and hi == hi else "n/a",
        "images_out_of_range": out_of_range,
    }

    nan_pixels = int(images["n_nan"].fillna(0).sum())
    images_with_nan = int((images["n_nan"].fillna(0) > 0).sum())
    null_cells = int(images.drop(columns=["n_nan"]).isna().sum().sum())
    nulls = {"nan_pixels": nan_pixels, "images_with_nan": images_with_nan, "null_cells": null_cells}

    missing = counts[counts["n_images"] < 1]
    missing_text = ", ".join(f"class {r.class_name!r} in {r.split}" for r in missing.itertuples()) or "none"
    coverage: dict[str, int | float | str] = {"missing_class_splits": len(missing), "missing": missing_text}
    for split in SPLIT_NAMES:
        split_counts = counts.loc[counts["split"] == split, "n_images"]
        coverage[f"smallest_class_{split}"] = int(split_counts.min()) if len(split_counts) else 0

    hash_splits = pairs.groupby("image_hash")["split"].nunique()
    leaked = hash_splits[hash_splits > 1]
    leaked_pairs = pairs[pairs["image_hash"].isin(leaked.index)]
    examples = leaked_pairs.groupby("image_hash")["split"].agg(lambda s: "+".join(sorted(s))).head(3)
    leakage = {
        "distinct_images": int(len(hash_splits)),
        "leaked_images": int(len(leaked)),
        "leaked_rows": int(len(leaked_pairs)),
        "leaked_examples": ", ".join(f"{h[:12]} in {s}" for h, s in examples.items()) or "none",
    }

    train = counts[counts["split"] == "train"]
    largest = int(train["n_images"].max()) if len(train) else 0
    smallest = int(train["n_images"].min()) if len(train) else 0
    ratio = largest / smallest if smallest else float("inf")
    balance: dict[str, int | float | str] = {
        "largest_class_train": largest,
        "smallest_class_train": smallest,
        "class_ratio_train": ratio if smallest else "inf",
        "max_class_ratio": float(max_class_ratio),
        "min_images_per_class_train": min_class_size(largest, max_class_ratio),
    }

    return {
        "schema": (schema, f"{n} images, dtype {dtypes}, shape {shapes}, labels {label_range} "
                           f"for {len(names)} classes"),
        "pixel_range": (pixel_range, f"{out_of_range} image(s) with pixels outside {PIXEL_MIN}..{PIXEL_MAX}"),
        "no_nulls": (nulls, f"{nan_pixels} NaN pixel(s) in {images_with_nan} image(s), "
                            f"{null_cells} null cell(s)"),
        "class_coverage": (coverage, f"{len(missing)} (split, class) pair(s) without images: {missing_text}"),
        "no_leakage": (leakage, f"{len(leaked)} image(s) in more than one split"
                                + (f" ({leakage['leaked_examples']})" if len(leaked) else "")),
        "class_balance": (balance, f"largest/smallest train class {largest}/{smallest} = "
                                   f"{ratio:.2f} (bound {max_class_ratio:g})"),
    }


def write_html_report(report: DataQualityReport, directory: str | Path, title: str = "data_splits") -> None:
    """Write ``index.html`` (a summary linking the checks) and one GX Data Docs page per check.

    The GX pages load Bootstrap and jQuery from public CDNs; offline they are unstyled but
    complete.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for check, page in report.pages.items():
        (directory / page_name(check)).write_text(page, encoding="utf-8")
    (directory / INDEX_PAGE).write_text(index_html(report, title), encoding="utf-8")


def index_html(report: DataQualityReport, title: str) -> str:
    """A self-contained summary page: one row per check, linking its GX page."""
    rows = []
    for check, result in report.checks.items():
        status = "passed" if result.success else "FAILED"
        colour = "#1a7f37" if result.success else "#cf222e"
        rows.append(
            "<tr>"
            f"<td><a href='{html.escape(page_name(check))}'>{html.escape(check)}</a></td>"
            f"<td style='color:{colour};font-weight:bold'>{status}</td>"
            f"<td>{result.expectations - len(result.failed)}/{result.expectations}</td>"
            f"<td>{result.unexpected_rows} of {result.rows} ({html.escape(result.table)})</td>"
            f"<td>{html.escape(result.reason)}</td>"
            "</tr>"
        )
    overall = "all checks passed" if report.success else f"failed: {', '.join(report.failed_checks)}"
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>Data quality: {html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}</style>"
        f"</head><body><h1>Data quality: {html.escape(title)}</h1>"
        f"<p>{html.escape(overall)}; max class ratio {report.max_class_ratio:g}. "
        "Each check links to its Great Expectations validation page.</p>"
        "<table><tr><th>check</th><th>status</th><th>expectations met</th><th>unexpected rows</th>"
        f"<th>reason</th></tr>{''.join(rows)}</table></body></html>"
    )
