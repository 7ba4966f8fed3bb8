"""Run one benchmark: ``python -m benchmarks NAME [--quick] [--json]``.

Each benchmark module ``benchmarks/<name>.py`` defines ``run(quick: bool) -> dict``
returning its figures (ratios to peers measured in the same run included) and
``describe(figures) -> str`` for the human-readable form.  Progress goes to
stderr; with ``--json`` stdout holds exactly one JSON object.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

NAMES = ("encode", "package", "dice", "quality", "scale", "privacy", "spark")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks")
    p.add_argument("name", choices=NAMES)
    p.add_argument("--quick", action="store_true", help="small sizes, finishes within a minute")
    p.add_argument("--json", action="store_true", help="print one JSON object of figures")
    args = p.parse_args(argv)
    try:
        mod = importlib.import_module(f"benchmarks.{args.name}")
    except ModuleNotFoundError as e:
        if e.name == f"benchmarks.{args.name}":
            print(f"Error: benchmark {args.name!r} is not written yet", file=sys.stderr)
            return 2
        raise
    figures = mod.run(quick=args.quick)
    figures = {"benchmark": args.name, "quick": args.quick, **figures}
    if args.json:
        print(json.dumps(figures, ensure_ascii=False, default=str))
    else:
        print(mod.describe(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
