"""The clinical ALBERT pipeline: one pure factory from a `PipelineConfig` to a TFX pipeline.

corpus -> ClinicalExampleGen -> StatisticsGen -> SchemaGen -> ExampleValidator
       -> SentencePieceTokenizer (train split) -> TokenizedTransform (in-graph tokenization)
       -> TokenSchemaGen -> ExampleValidator (token level) -> AnomalyGate
       -> Trainer "pretrain" (MLM + SOP) -> Trainer "finetune" (classification)
       -> Evaluator (against the latest blessed model) -> ServingCheck -> ModelCard
       -> Pusher (only if blessed; the card beside the model)

A run builds on earlier runs (pipeline/resolvers.py): the tokenizer reuses the vocabulary of its
vocabulary_version, pretraining continues from the last pretrained model, fine-tuning starts from the
last blessed model; each resolved from ML Metadata as "the newest made from other examples", so that a
run on unchanged data is still served from the cache.
"""

from __future__ import annotations

import json

import tensorflow_model_analysis as tfma
from tfx import v1 as tfx

from components.clinical_example_gen.component import ClinicalExampleGen
from components.data_checks.component import AnomalyGate, TokenSchemaGen
from components.model_card.component import ModelCard
from components.pretraining_examples.component import PretrainingExamples
from components.pusher.component import Pusher
from components.sentencepiece_tokenizer.component import SentencePieceModel, SentencePieceTokenizer
from components.serving_check.component import ServingCheck
from components.with_tokenizer.component import TokenizedTrainer, TokenizedTransform
from pipeline import resolvers
from pipeline.configs import PipelineConfig


def _floor_and_drop(floor: float, max_drop: float) -> tfma.MetricThreshold:
    """At least `floor`, and no more than `max_drop` below the baseline (the last blessed model)."""
    return tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": floor}),
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER, absolute={"value": -max_drop}
        ),
    )


def _model_spec(label_key: str, prediction_key: str = "probabilities") -> tfma.ModelSpec:
    """The export's Evaluator signature, fed raw examples through its own Transform signature."""
    return tfma.ModelSpec(
        signature_name="predict_examples",
        preprocessing_function_names=["transform_features"],
        label_key=label_key,
        prediction_key=prediction_key,
    )


def eval_config(config: PipelineConfig) -> tfma.EvalConfig:
    """Accuracy with a floor and a bound on the drop against the baseline; macro F1 with a floor, and
    per-class precision/recall/F1; slices by note type and length. The Evaluator feeds raw examples
    through the model's own Transform signature."""
    if config.task == "token_classification":
        return _token_eval_config(config)
    if config.task == "multi_label_classification":
        return _multi_label_eval_config(config)
    accuracy_threshold = _floor_and_drop(config.min_accuracy, config.max_accuracy_drop)
    f1_threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": config.min_macro_f1})
    )
    metrics_specs = [
        tfma.MetricsSpec(
            metrics=[
                tfma.MetricConfig(class_name="ExampleCount"),
                tfma.MetricConfig(class_name="SparseCategoricalAccuracy", threshold=accuracy_threshold),
                # Argmax-based macro F1 plus per-class precision, recall and F1 (sub key class_id).
                tfma.MetricConfig(
                    class_name="MacroF1",
                    module="components.eval_metrics",
                    config=json.dumps({"num_classes": len(config.label_names)}),
                    threshold=f1_threshold,
                ),
                tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot"),
            ]
        )
    ]
    return tfma.EvalConfig(
        model_specs=[_model_spec("label")],
        slicing_specs=[
            tfma.SlicingSpec(),
            tfma.SlicingSpec(feature_keys=["note_type"]),
            tfma.SlicingSpec(feature_keys=["length_bucket"]),
        ],
        metrics_specs=metrics_specs,
    )


def _multi_label_eval_config(config: PipelineConfig) -> tfma.EvalConfig:
    """Multi-label: micro- and macro-F1, micro precision/recall, subset accuracy and per-label
    precision/recall/F1 (sub key class_id) at each label's own threshold (the model's decision
    scores); the blessing metric (micro or macro F1) has a floor (min_macro_f1) and a bound on the
    drop against the baseline (max_accuracy_drop). Slices by note type and length."""
    blessing = "micro_f1" if config.blessing_metric == "micro_f1" else "multi_label_macro_f1"
    scores = tfma.MetricConfig(
        class_name="MultiLabelF1",
        module="components.eval_metrics",
        # The metric's own key is the blessing metric: the threshold applies to it.
        config=json.dumps({"name": blessing, "num_classes": len(config.label_names)}),
        threshold=_floor_and_drop(config.min_macro_f1, config.max_accuracy_drop),
    )
    return tfma.EvalConfig(
        model_specs=[_model_spec("label_set", "decision_scores")],
        slicing_specs=[
            tfma.SlicingSpec(),
            tfma.SlicingSpec(feature_keys=["note_type"]),
            tfma.SlicingSpec(feature_keys=["length_bucket"]),
        ],
        metrics_specs=[tfma.MetricsSpec(metrics=[tfma.MetricConfig(class_name="ExampleCount"), scores])],
    )


def _token_eval_config(config: PipelineConfig) -> tfma.EvalConfig:
    """Token classification: entity-level F1 on words with conlleval's rules (exact span and type,
    micro over entities) with a floor (min_macro_f1) and a bound on the drop against the baseline
    (max_accuracy_drop), plus entity precision/recall overall and per type and the word accuracy;
    sliced by note length."""
    f1_threshold = _floor_and_drop(config.min_macro_f1, config.max_accuracy_drop)
    entity_f1 = tfma.MetricConfig(
        class_name="EntityF1",
        module="components.eval_metrics",
        config=json.dumps({"num_types": len(config.entity_types)}),
        threshold=f1_threshold,
    )
    return tfma.EvalConfig(
        model_specs=[_model_spec("token_labels")],
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=["length_bucket"])],
        metrics_specs=[tfma.MetricsSpec(metrics=[tfma.MetricConfig(class_name="ExampleCount"), entity_f1])],
    )


_OUTPUT_KEYS = {"SentencePieceTokenizer": "tokenizer", "pretrain": "model", "finetune": "model"}


def _build_on(node_id: str, kind: type, examples, *, portable: bool, **config) -> tfx.dsl.Resolver:
    """A resolver of what `node_id` made in an earlier run from other examples than `examples`
    (`resolvers.BuildOn`); `portable`: the newest artifact of the type (Kubeflow compiles only TFX's
    stock strategies)."""
    candidates = tfx.dsl.Channel(type=kind, producer_component_id=node_id, output_key=_OUTPUT_KEYS[node_id])
    if portable:
        return tfx.dsl.Resolver(
            strategy_class=tfx.dsl.experimental.LatestArtifactStrategy,
            **{resolvers.CANDIDATES_KEY: candidates},
        )
    return tfx.dsl.Resolver(
        strategy_class=resolvers.BuildOn,
        config=config,
        **{resolvers.EXAMPLES_KEY: examples, resolvers.CANDIDATES_KEY: candidates},
    )


def create_pipeline(
    config: PipelineConfig, metadata_connection_config=None, portable: bool = False
) -> tfx.dsl.Pipeline:
    """The pipeline of `config`. `portable`: only TFX's stock resolver strategies (Kubeflow Pipelines
    v2): the vocabulary is still reused, but models are trained afresh each run."""
    example_gen = ClinicalExampleGen(
        input_base=config.corpus_path,
        input_format=config.corpus_format,
        reader_config=config.reader_settings,
        splits=config.splits,
        split_source=config.split_source,
        max_note_bytes=config.max_note_bytes,
        scrubber_config=config.scrubber_config,
        spans=config.corpus_spans,
    )
    examples = example_gen.outputs["examples"]
    statistics_gen = tfx.components.StatisticsGen(examples=examples)
    if config.schema_path:
        schema_gen = tfx.components.ImportSchemaGen(schema_file=config.schema_path)
    else:
        schema_gen = tfx.components.SchemaGen(statistics=statistics_gen.outputs["statistics"])
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )

    vocabulary = _build_on(
        "SentencePieceTokenizer",
        SentencePieceModel,
        examples,
        portable=portable,
        vocabulary_version=config.vocabulary_version,
    ).with_id("vocabulary_resolver")
    tokenizer = SentencePieceTokenizer(
        examples=examples,
        vocab_size=config.vocab_size,
        vocab_size_fit=config.vocab_size_fit,
        max_sentences=config.max_tokenizer_sentences,
        seed=config.seed,
        previous=vocabulary.outputs[resolvers.CANDIDATES_KEY],
        vocabulary_version=config.vocabulary_version,
    )
    transform = TokenizedTransform(
        examples=examples,
        schema=schema_gen.outputs["schema"],
        tokenizer=tokenizer.outputs["tokenizer"],
        preprocessing_fn="components.transform_module.preprocessing_fn",
        custom_config={
            "seq_length": config.seq_length,
            "label_names": list(config.label_names),
            "label_priority": list(config.label_priority),
            "task": config.task,
            "entity_types": list(config.entity_types),
            "window_stride": config.windows,
            "max_windows": config.max_windows,
        },
    )
    token_schema = TokenSchemaGen(
        transformed_schema=transform.outputs["post_transform_schema"],
        max_unk_fraction=config.max_unk_fraction,
    )
    token_validator = tfx.components.ExampleValidator(
        statistics=transform.outputs["post_transform_stats"], schema=token_schema.outputs["schema"]
    ).with_id("token_validator")
    gate = AnomalyGate(
        raw_anomalies=example_validator.outputs["anomalies"],
        token_anomalies=token_validator.outputs["anomalies"],
        tokenizer=tokenizer.outputs["tokenizer"],
        stop_on_anomalies=int(config.stop_on_anomalies),
        max_unk_rate_increase=config.max_unk_rate_increase,
        max_pieces_per_word_ratio=config.max_pieces_per_word_ratio,
    )
    transformed = transform.outputs["transformed_examples"]
    pretraining_examples = PretrainingExamples(
        examples=transformed,
        tokenizer=tokenizer.outputs["tokenizer"],
        max_seq_length=config.seq_length,
        max_predictions_per_seq=config.max_predictions,
        masked_lm_prob=config.masked_lm_prob,
        dupe_factor=config.pretrain_dupe_factor,
        seed=config.seed,
    )
    pretraining_examples.add_upstream_node(gate)
    resolved = []
    last_pretrained = last_blessed = None
    if config.continue_pretraining and not portable:
        last_pretrained = _build_on(
            "pretrain",
            tfx.types.standard_artifacts.Model,
            pretraining_examples.outputs["examples"],
            portable=False,
        ).with_id("pretrained_model_resolver")
        resolved.append(last_pretrained)
    if config.warm_start_finetuning and not portable:
        last_blessed = _build_on(
            "finetune", tfx.types.standard_artifacts.Model, transformed, portable=False, blessed_only=True
        ).with_id("warm_start_model_resolver")
        resolved.append(last_blessed)

    pretrainer = TokenizedTrainer(
        examples=pretraining_examples.outputs["examples"],
        tokenizer=tokenizer.outputs["tokenizer"],
        base_model=last_pretrained.outputs[resolvers.CANDIDATES_KEY] if last_pretrained else None,
        run_fn="components.trainer.pretrain.run_fn",
        train_args=tfx.proto.TrainArgs(splits=["train"], num_steps=config.pretrain_steps),
        eval_args=tfx.proto.EvalArgs(splits=["eval"], num_steps=0),
        custom_config={
            "preset": config.preset,
            "seq_length": config.seq_length,
            "max_predictions": config.max_predictions,
            "batch_size": config.pretrain_batch_size,
            "learning_rate": config.pretrain_learning_rate,
            "init_checkpoint": config.init_checkpoint,
            "init_checkpoint_format": config.init_checkpoint_format,
            "seed": config.seed,
            "continued_steps": config.continued_pretrain_steps,
            "training_backend": config.training_backend,
        },
    ).with_id("pretrain")
    pretrainer.add_upstream_node(gate)
    # The tokenizer: the token task's export tokenizes with offsets, and a warm start must share it.
    finetuner = TokenizedTrainer(
        tokenizer=tokenizer.outputs["tokenizer"],
        examples=transformed,
        transform_graph=transform.outputs["transform_graph"],
        base_model=pretrainer.outputs["model"],
        warm_start_model=last_blessed.outputs[resolvers.CANDIDATES_KEY] if last_blessed else None,
        run_fn="components.trainer.finetune.run_fn",
        train_args=tfx.proto.TrainArgs(splits=["train"], num_steps=config.finetune_steps),
        eval_args=tfx.proto.EvalArgs(splits=["eval"], num_steps=config.eval_steps),
        custom_config={
            "batch_size": config.finetune_batch_size,
            "learning_rate": config.finetune_learning_rate,
            "seed": config.seed,
            "label_names": list(config.label_names),
            "task": config.task,
            "entity_types": list(config.entity_types),
            "seq_length": config.seq_length,
            "window_stride": config.windows,
            "max_windows": config.max_windows,
            "window_pooling": config.window_pooling,
            "epochs": config.finetune_epochs,
            "warmup_fraction": config.finetune_warmup_fraction,
            "eval_every": config.finetune_eval_every,
            "patience": config.finetune_patience,
            "clipnorm": config.finetune_clipnorm,
            "recipe": config.finetune_recipe,
            "training_backend": config.training_backend,
        },
    ).with_id("finetune")

    baseline = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")
    evaluator = tfx.components.Evaluator(
        examples=examples,
        model=finetuner.outputs["model"],
        baseline_model=baseline.outputs["model"],
        eval_config=eval_config(config),
    )
    serving_check = ServingCheck(model=finetuner.outputs["model"])
    model_card = ModelCard(
        ingest_report=example_gen.outputs["report"],
        tokenizer=tokenizer.outputs["tokenizer"],
        pretrained_model=pretrainer.outputs["model"],
        model=finetuner.outputs["model"],
        model_run=finetuner.outputs["model_run"],
        evaluation=evaluator.outputs["evaluation"],
        blessing=evaluator.outputs["blessing"],
        baseline_model=baseline.outputs["model"],
        corpus=example_gen.exec_properties,
        pretraining=pretrainer.exec_properties,
        fine_tuning=finetuner.exec_properties,
        seed=config.seed,
    )
    pusher = Pusher(
        model=finetuner.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        infra_blessing=serving_check.outputs["blessing"],
        model_card=model_card.outputs["model_card"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=config.serving_dir)
        ),
    )
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        components=[
            example_gen,
            statistics_gen,
            schema_gen,
            example_validator,
            vocabulary,
            tokenizer,
            transform,
            token_schema,
            token_validator,
            gate,
            *resolved,
            pretraining_examples,
            pretrainer,
            finetuner,
            baseline,
            evaluator,
            serving_check,
            model_card,
            pusher,
        ],
        enable_cache=True,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(config.beam_args),
    )
