"""`mlops-feedback export`: labelled production images into the labelled source, so retraining sees new labels.

Every prediction that received feedback (POST /feedback) and whose image the service kept (MLOPS_KEEP_IMAGES)
is written as ``<folder>/<label>/production_<prediction id>.png``, once: exporting again writes nothing, so the
source's fingerprint changes only with new labels. The drift sensor's retraining policy then sees a labelled
source that production was not trained on. Reads the same settings as the service and Dagster
(MLOPS_ARTIFACT_ROOT, MLOPS_IMAGE_FOLDER); no Dagster import. The same from the UI: ``export_feedback_job``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from datetime import UTC, datetime


def _day(text: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    from mlops_assets.core.common.settings import ARTIFACT_ROOT, IMAGE_FOLDER, resolve
    from mlops_assets.core.serving.feedback import export_labelled_images

    parser = argparse.ArgumentParser(prog="mlops-feedback", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("export", help="write labelled production images into the labelled source")
    export.add_argument("--to", help=f"the image folder (default: ${IMAGE_FOLDER})")
    export.add_argument("--artifacts", help=f"the artifact root (default: ${ARTIFACT_ROOT})")
    export.add_argument("--since", type=_day, help="only predictions made on or after this day (UTC)")
    export.add_argument("--until", type=_day, help="only predictions made before this day (UTC)")
    args = parser.parse_args(argv)
    folder = args.to or resolve(IMAGE_FOLDER)
    if not folder:
        print(f"mlops-feedback: no image folder: pass --to or set {IMAGE_FOLDER} (the labelled source of an "
              "image_folder dataset; the embedded digits cannot take new images)", file=sys.stderr)
        return 2
    report = export_labelled_images(args.artifacts or resolve(ARTIFACT_ROOT), folder, args.since, args.until)
    print(json.dumps({"folder": folder, **asdict(report)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
