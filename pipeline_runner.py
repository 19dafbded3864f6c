"""The project's one entry point.

    python pipeline_runner.py smoke    # a tiny ALBERT: forward pass and one training step on CPU

The TFX pipeline and its local, Kubeflow and Airflow runners come with the pipeline itself.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    smoke = commands.add_parser("smoke", help="forward pass and one training step of a tiny ALBERT")
    smoke.add_argument("--preset", default="tiny", help="ALBERT preset (default: tiny)")
    smoke.add_argument("--batch", type=int, default=4)
    smoke.add_argument("--seq", type=int, default=32)
    args = parser.parse_args(argv)

    if args.command == "smoke":
        from albert_keras.smoke import run

        run(preset=args.preset, batch=args.batch, seq=args.seq)
    return 0


if __name__ == "__main__":
    sys.exit(main())
