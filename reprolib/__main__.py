"""Command line: ``python -m reprolib data {list, prepare, verify}`` and ``python -m reprolib report readme``.
Exit status: 0 on success, 1 on an error (message on stderr), 2 on a malformed command line.

Examples::

    python -m reprolib data list
    python -m reprolib data prepare sid-sony-mini
    python -m reprolib data prepare raw-nod --root /data/raw-nod
    python -m reprolib data verify sid-lists --root /data/sid
    python -m reprolib report readme --write   # the README's results table, from results/
"""
from __future__ import annotations

import argparse
import sys

from . import data
from .raw import RawReadError


def _list(args) -> int:
    table = data.manifest_table()[["name", "kind", "size", "present"]]
    widths = {c: max(len(c), *(len(str(v)) for v in table[c])) for c in table.columns}
    print("  ".join(c.ljust(widths[c]) for c in table.columns))
    for row in table.itertuples(index=False):
        print("  ".join(str(v).ljust(widths[c]) for c, v in zip(table.columns, row)))
    print(f"\n(default location: {data.cache_dir()}/<name>; set REPROLIB_DATA to change it)")
    return 0


def _prepare(args) -> int:
    print(data.prepare(args.name, args.root, download=not args.no_download))
    return 0


def _verify(args) -> int:
    report = data.verify(args.name, args.root)
    for key in ("name", "kind", "root", "files", "sha256_checked", "bytes", "fingerprint"):
        print(f"{key}: {report[key]}")
    for pattern, n in report["counts"].items():
        print(f"  {pattern}: {n}")
    return 0


def _readme(args) -> int:
    from . import report, study  # pyplot and the records: only for this command

    summary = report.readme_summary(study.load_records())
    if args.write:
        changed = report.update_readme(study.repo_root() / "README.md", summary)
        print("README.md updated" if changed else "README.md already current")
    else:
        print(summary)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m reprolib``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m reprolib",
                                     description="Data sets and weights of the reproducibility study.")
    commands = parser.add_subparsers(dest="command", required=True)
    data_parser = commands.add_parser("data", help="list, prepare or verify the data sets of data_manifest.yaml")
    actions = data_parser.add_subparsers(dest="action", required=True)

    p = actions.add_parser("list", help="every entry: kind, size, present in the default location")
    p.set_defaults(run=_list)
    p = actions.add_parser("prepare", help="generate, download or check one entry; prints its folder")
    p.add_argument("name")
    p.add_argument("--root", help="the data set folder (default: $REPROLIB_DATA/<name>)")
    p.add_argument("--no-download", action="store_true", help="never download (also REPROLIB_OFFLINE=1)")
    p.set_defaults(run=_prepare)
    p = actions.add_parser("verify", help="recompute every known sha256 of one entry")
    p.add_argument("name")
    p.add_argument("--root", help="the data set folder (default: $REPROLIB_DATA/<name>)")
    p.set_defaults(run=_verify)

    report_parser = commands.add_parser("report", help="summaries of the run records in results/")
    report_actions = report_parser.add_subparsers(dest="action", required=True)
    p = report_actions.add_parser("readme", help="the README's short results table (printed, or --write)")
    p.add_argument("--write", action="store_true", help="rewrite the table's block in README.md")
    p.set_defaults(run=_readme)

    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (data.DataMissingError, data.DataVerificationError, data.ManifestError, data.UnknownEntryError,
            RawReadError, FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
