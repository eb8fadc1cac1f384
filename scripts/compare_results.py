"""Compare the metric values of two ``results/`` trees (e.g. two cold builds at two commits).

For each (study, profile, notebook, variant), the newest run record on each side (the book's selection,
``reprolib.report.latest_records``) is read, and every ``metrics[]`` row is matched by its ``key``
(or ``model`` + ``metric`` when it has none; a key shared by several rows adds the model). Prints
per study how many values were compared, how many differ (exact equality unless ``--tolerance``),
each difference, and the rows and records found on one side only. Exit code 1 when a value differs
(with ``--strict``, also when a row or record is on one side only).

    python scripts/compare_results.py ../before/results results
    python scripts/compare_results.py A B --profile mini --ignore-timing
"""
import argparse
import json
import math
import re
import sys
from collections import Counter
from pathlib import Path

from reprolib.report import latest_records, record_variant
from reprolib.study import RECIPES

#: rows measured with a clock or of this machine's memory: they differ from run to run
TIMING = r"cpu_s|speedup|seconds|latency|memory|GB"


def load(root: Path) -> dict:
    """(study, profile, notebook, variant) → the newest record under ``root`` (``<study>/<run-id>/record.json``)."""
    records = []
    for path in sorted(root.glob("*/*/record.json")):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as e:
            print(f"warning: skipping {path}: {e}", file=sys.stderr)
    return {(r.get("study"), r.get("profile"), r.get("notebook"), record_variant(r)): r
            for r in latest_records(records)}


def rows(record: dict) -> dict:
    """Row id → metric row: ``key`` (``key · model`` when a key repeats; ``model · metric`` without a
    key; ``#n`` appended to a still repeated id)."""
    metrics = [m for m in record.get("metrics", []) if isinstance(m, dict)]
    keys = Counter(m.get("key") for m in metrics if m.get("key"))
    out: dict = {}
    for m in metrics:
        key = m.get("key")
        rid = (key if keys[key] == 1 else f"{key} · {m.get('model', '')}") if key else \
            f"{m.get('model', '')} · {m.get('metric', '')}"
        n, base = 1, rid
        while rid in out:
            n += 1
            rid = f"{base} #{n}"
        out[rid] = m
    return out


def same(a, b, tolerance: float) -> bool:
    """Equal values: exactly (NaN equals NaN), or within ``tolerance`` for numbers."""
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b if tolerance == 0 else abs(a - b) <= tolerance
    return a == b


def compare(a_root: Path, b_root: Path, tolerance: float = 0.0, ignore: str | None = None,
            profile: str | None = None, out=sys.stdout) -> dict:
    """Compare two results trees; prints the report to ``out`` and returns the totals
    ``{"compared", "differ", "ignored", "one_side_rows", "one_side_records"}``."""
    a, b = load(Path(a_root)), load(Path(b_root))
    skip = re.compile(ignore) if ignore else None
    totals = Counter(compared=0, differ=0, ignored=0, one_side_rows=0, one_side_records=0)
    for ident in sorted(set(a) | set(b), key=lambda k: tuple(str(x) for x in k)):
        study, prof, notebook, variant = ident
        if profile is not None and prof != profile:
            continue
        name = f"{study} ({prof}, {notebook}{'' if variant == RECIPES.get(prof) else ', ' + variant})"
        if ident not in a or ident not in b:
            totals["one_side_records"] += 1
            print(f"{name}: record only in {'A' if ident in a else 'B'}", file=out)
            continue
        ra, rb = rows(a[ident]), rows(b[ident])
        lines, n = [], Counter()
        for rid in sorted(set(ra) | set(rb)):
            row = ra.get(rid) or rb[rid]
            if skip and skip.search(f"{row.get('key', '')} {row.get('metric', '')}"):
                n["ignored"] += 1
            elif rid not in ra or rid not in rb:
                n["one_side_rows"] += 1
                lines.append(f"  only in {'A' if rid in ra else 'B'}: {rid} = {row.get('value')!r}")
            else:
                n["compared"] += 1
                if not same(ra[rid].get("value"), rb[rid].get("value"), tolerance):
                    n["differ"] += 1
                    lines.append(f"  differs: {rid}: A = {ra[rid].get('value')!r}, B = {rb[rid].get('value')!r}")
        totals.update(n)
        print(f"{name}: {n['compared']} values compared, {n['differ']} differ, {n['ignored']} ignored, "
              f"{n['one_side_rows']} rows on one side only", file=out)
        for line in lines:
            print(line, file=out)
    print(f"TOTAL: {totals['compared']} values compared, {totals['differ']} differ, {totals['ignored']} ignored, "
          f"{totals['one_side_rows']} rows and {totals['one_side_records']} records on one side only", file=out)
    return dict(totals)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path, help="first results/ tree (e.g. the baseline's)")
    ap.add_argument("b", type=Path, help="second results/ tree")
    ap.add_argument("--tolerance", type=float, default=0.0, help="absolute tolerance (default: exact equality)")
    ap.add_argument("--ignore", help="regex on a row's key and metric to skip (e.g. 'cpu_s|seconds|latency|memory|GB')")
    ap.add_argument("--ignore-timing", action="store_true", help=f"skip timing and memory rows ({TIMING})")
    ap.add_argument("--profile", help="compare only records of this profile (smoke, mini, full)")
    ap.add_argument("--strict", action="store_true", help="also fail when a row or record is on one side only")
    args = ap.parse_args(argv)
    for root in (args.a, args.b):
        if not root.is_dir():
            ap.error(f"{root} is not a directory")
    ignore = "|".join(p for p in (args.ignore, TIMING if args.ignore_timing else None) if p) or None
    t = compare(args.a, args.b, args.tolerance, ignore, args.profile)
    return 1 if t["differ"] or (args.strict and (t["one_side_rows"] or t["one_side_records"])) else 0


if __name__ == "__main__":
    sys.exit(main())
