"""The project's one entry point.

    python pipeline_runner.py run [--runner local] --tiny       # the pipeline on the bundled sample
    python pipeline_runner.py run --config my.json --set pretrain_steps=50000
    python pipeline_runner.py run --runner kubeflow --output-dir gs://BUCKET/runs --image REGISTRY/IMAGE
                                                                # writes the KFP v2 pipeline spec
    python pipeline_runner.py run --runner airflow --output-dir /abs/runs --schedule @weekly
                                                                # validates the DAG, says how to install it
    python pipeline_runner.py run --tiny --verbose              # the libraries' output on the console too
    python pipeline_runner.py runs --tiny                       # past runs, newest first
    python pipeline_runner.py show --tiny 2025-06-01T02:00      # one run's lineage (a run id or its prefix)
    python pipeline_runner.py prune --tiny --dry-run [--why]    # what retention would remove (and keep)
    python pipeline_runner.py smoke                             # a tiny ALBERT's forward pass and step

Configuration: the defaults of `pipeline.configs.PipelineConfig`, then `--tiny` (a tiny model and
few steps), then `--config FILE` (JSON), then the flags, then each `--set KEY=VALUE` (VALUE as JSON,
or a plain string). `runs`, `show` and `prune` take the same flags, so that the same configuration
finds the same ML Metadata (`<output_dir>/metadata.sqlite`), pipeline root and serving directory;
`prune` follows keep_serving_versions and keep_pipeline_runs (pipeline/retention.py).
"""

from __future__ import annotations

import argparse
import json
import sys


def build_config(args: argparse.Namespace):
    from pipeline.configs import TINY, PipelineConfig

    values: dict = dict(TINY) if args.tiny else {}
    if args.config:
        with open(args.config, encoding="utf-8") as f:
            values.update(json.load(f))
    flags = {
        "output_dir": args.output_dir,
        "corpus_path": args.corpus,
        "corpus_format": args.corpus_format,
        "preset": args.preset,
        "pretrain_steps": args.pretrain_steps,
        "finetune_steps": args.finetune_steps,
        "min_accuracy": args.min_accuracy,
    }
    values.update({k: v for k, v in flags.items() if v is not None})
    if args.beam_arg:
        values["beam_args"] = list(args.beam_arg)
    for item in args.set:
        key, sep, raw = item.partition("=")
        if not sep:
            raise SystemExit(f"error: --set takes KEY=VALUE, received {item!r}")
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw
    return PipelineConfig.from_dict(values)


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """The flags `build_config` reads, on every subcommand that needs the configuration."""
    from pipeline.configs import CORPUS_FORMATS

    parser.add_argument("--tiny", action="store_true", help="tiny model and few steps (the sample run)")
    parser.add_argument("--config", help="JSON file of PipelineConfig fields")
    parser.add_argument("--output-dir")
    parser.add_argument("--corpus", help="corpus file or folder")
    parser.add_argument("--corpus-format", choices=CORPUS_FORMATS)
    parser.add_argument("--preset", help="ALBERT preset")
    parser.add_argument("--pretrain-steps", type=int)
    parser.add_argument("--finetune-steps", type=int)
    parser.add_argument("--min-accuracy", type=float, help="the Evaluator's accuracy floor for blessing")
    parser.add_argument("--beam-arg", action="append", default=[], help="a Beam pipeline option (repeatable)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="any PipelineConfig field"
    )


def main(argv: list[str] | None = None) -> int:
    from pipeline import runners

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run or compile the pipeline")
    run.add_argument("--runner", choices=("local", "kubeflow", "airflow"), default="local")
    add_config_flags(run)
    run.add_argument("--verbose", action="store_true", help="local: the libraries' output on the console too")
    run.add_argument(
        "--image", default=runners.DEFAULT_IMAGE, help="kubeflow: every task's image (default: %(default)s)"
    )
    run.add_argument(
        "--output-spec",
        default="",
        help="kubeflow: the spec, .yaml or .json (default: <output-dir>/<name>.yaml)",
    )
    run.add_argument(
        "--schedule", default=runners.DEFAULT_SCHEDULE, help="airflow: the DAG's schedule (%(default)s)"
    )

    runs = commands.add_parser("runs", help="past runs, newest first, from ML Metadata")
    add_config_flags(runs)
    show = commands.add_parser("show", help="one run's lineage: corpus, tokenizer, models, evaluation, push")
    show.add_argument("run_id", metavar="RUN", help="a run id (from `runs`) or a unique prefix of it")
    add_config_flags(show)
    prune = commands.add_parser("prune", help="remove old serving versions and pipeline-root artifacts")
    prune.add_argument("--dry-run", action="store_true", help="say what would be removed; remove nothing")
    prune.add_argument("--why", action="store_true", help="also say why each thing that stays is kept")
    add_config_flags(prune)

    smoke = commands.add_parser("smoke", help="forward pass and one training step of a tiny ALBERT")
    smoke.add_argument("--preset", default="tiny", help="ALBERT preset (default: tiny)")
    smoke.add_argument("--batch", type=int, default=4)
    smoke.add_argument("--seq", type=int, default=32)
    args = parser.parse_args(argv)

    if args.command == "smoke":
        from albert_keras.smoke import run as smoke_run

        smoke_run(preset=args.preset, batch=args.batch, seq=args.seq)
    elif args.command == "run":
        config = build_config(args)
        if args.runner == "kubeflow":
            print(f"Kubeflow pipeline spec: {runners.compile_kubeflow(config, args.image, args.output_spec)}")
        elif args.runner == "airflow":
            print(runners.prepare_airflow(config, args.schedule))
        else:
            from pipeline.console import PipelineFailed

            try:
                runners.run_local(config, verbose=args.verbose)
            except PipelineFailed:
                return 1  # the console has named the component, the error and the log
            except KeyboardInterrupt:
                return 130
    elif args.command in ("runs", "show"):
        from pipeline import history

        config = build_config(args)
        try:
            if args.command == "runs":
                print(history.format_runs(history.list_runs(config.metadata_path, config.pipeline_name)))
            else:
                print(history.show_run(config.metadata_path, config.pipeline_name, args.run_id))
        except (FileNotFoundError, history.RunNotFound) as error:
            raise SystemExit(f"error: {error}") from None
    elif args.command == "prune":
        from pipeline import retention

        try:
            plan = retention.prune(build_config(args), dry_run=args.dry_run)
        except retention.RetentionError as error:
            raise SystemExit(f"error: {error}") from None
        print(plan.format(why=args.why))
    return 0


if __name__ == "__main__":
    sys.exit(main())
