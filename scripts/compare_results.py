"""Compare the evaluation tables of two results folders of one profile (e.g. two runs of the `ci` profile).

    python scripts/compare_results.py results/ci /tmp/other/results/ci

Prints, per protocol and model, whether `per_clip.csv` is identical apart from timing columns, and the largest
absolute difference of PSNR and SSIM. This is how the README's determinism statement was measured.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

TIMING = ("encode_seconds", "decode_seconds", "seconds")


def compare(first: Path, second: Path) -> pd.DataFrame:
    rows = []
    for table in sorted(first.glob("eval/*/*/per_clip.csv")):
        other = second / table.relative_to(first)
        if not other.is_file():
            rows.append({"table": str(table.relative_to(first)), "identical": "missing"})
            continue
        a = pd.read_csv(table).drop(columns=list(TIMING), errors="ignore")
        b = pd.read_csv(other).drop(columns=list(TIMING), errors="ignore")
        row = {"table": str(table.relative_to(first)), "identical": a.equals(b)}
        for metric in ("psnr", "ssim"):
            if metric in a and metric in b and len(a) == len(b):
                row[f"max_abs_diff_{metric}"] = float((a[metric] - b[metric]).abs().max())
        rows.append(row)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    args = parser.parse_args(argv)
    df = compare(args.first, args.second)
    print(df.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
