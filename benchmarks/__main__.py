"""Run every benchmark module (benchmarks/bench_*.py), each in its own interpreter."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    failed = []
    for module in sorted(HERE.glob("bench_*.py")):
        name = f"benchmarks.{module.stem}"
        print(f"== {name}", flush=True)
        if subprocess.run([sys.executable, "-m", name], cwd=HERE.parent).returncode != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
