"""The pipeline's one configuration object, read from a JSON file and command-line overrides.

Everything that changes what the pipeline computes lives here and reaches the components as
parameters or `custom_config`, so it is recorded in ML Metadata and changes the cache key.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

# The 40 medical specialties of MTSamples (shared/data/README.md), the default task's classes.
MTSAMPLES_SPECIALTIES = (
    "Allergy / Immunology", "Autopsy", "Bariatrics", "Cardiovascular / Pulmonary", "Chiropractic",
    "Consult - History and Phy.", "Cosmetic / Plastic Surgery", "Dentistry", "Dermatology",
    "Diets and Nutritions", "Discharge Summary", "ENT - Otolaryngology", "Emergency Room Reports",
    "Endocrinology", "Gastroenterology", "General Medicine", "Hematology - Oncology",
    "Hospice - Palliative Care", "IME-QME-Work Comp etc.", "Lab Medicine - Pathology", "Letters",
    "Nephrology", "Neurology", "Neurosurgery", "Obstetrics / Gynecology", "Office Notes", "Ophthalmology",
    "Orthopedic", "Pain Management", "Pediatrics - Neonatal", "Physical Medicine - Rehab", "Podiatry",
    "Psychiatry / Psychology", "Radiology", "Rheumatology", "SOAP / Chart / Progress Notes",
    "Sleep Medicine", "Speech - Language", "Surgery", "Urology",
)  # fmt: skip

TASKS = (
    "note_classification",
    "multi_label_classification",
    "text_pair_classification",
    "token_classification",
)
BLESSING_METRICS = ("micro_f1", "macro_f1")
WINDOW_POOLINGS = ("auto", "mean", "max")
FINETUNE_RECIPES = ("best", "plain")
CORPUS_FORMATS = ("csv", "mimic", "text_dir", "jsonl", "fhir", "i2b2", "conll")
#: Formats whose every record carries its entity spans (i2b2's XML tags, CoNLL's BIO column), with no
#: `spans_key` to set.
SPAN_FORMATS = ("i2b2", "conll")
#: Each format's reader settings when `reader_config` is empty (components/clinical_example_gen/readers.py):
#: the CSV defaults are MTSamples' columns, the bundled sample's; the other readers have defaults of
#: their own (MIMIC's NOTEEVENTS columns, JSON keys "id"/"text", FHIR's DocumentReference.type labels).
READER_DEFAULTS: dict[str, dict[str, Any]] = {
    "csv": {
        "id_column": "sample_id",
        "text_column": "transcription",
        "label_column": "medical_specialty",
        "group_column": "sample_id",
    },
    "mimic": {},
    "text_dir": {},
    "jsonl": {},
    "fhir": {},
    "i2b2": {},
    "conll": {},
}
VOCAB_SIZE_FITS = ("error", "lower")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE_CORPUS = os.path.join(REPO, "data", "sample")


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    # -- where things go --------------------------------------------------------------------------
    pipeline_name: str = "clinical-albert"
    # Artifacts, ML Metadata (SQLite, local runs) and the serving base directory (integer versions).
    output_dir: str = "runs/local"

    # -- corpus (the clinical ExampleGen) ---------------------------------------------------------
    corpus_path: str = os.path.join(SAMPLE_CORPUS, "mtsamples_sample.csv")
    corpus_format: str = "csv"  # csv, mimic, text_dir, jsonl, fhir, i2b2, conll
    # Reader settings for the format (components/clinical_example_gen/readers.py), e.g. for CSV which
    # columns hold the id, the text, the label and the group that splits must not divide. Empty: the
    # format's own defaults (READER_DEFAULTS), so changing the format changes them; see reader_settings.
    reader_config: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Split name -> relative weight; groups (patients, samples) never straddle splits.
    splits: dict[str, int] = dataclasses.field(default_factory=lambda: {"train": 8, "eval": 1, "test": 1})
    # A corpus's own (official) splits, which replace the hash split: {"files": {split: [patterns]}}
    # matches each input file's name under corpus_path (fnmatch), {"field": {split: [values]}} reads
    # each record's split value (reader_config split_column / split_key). Empty: hash by group.
    split_source: dict[str, Any] = dataclasses.field(default_factory=dict)
    # corpus_path may hold {SPAN} (and {VERSION}), as TFX's ExampleGen patterns do: "notes/{SPAN}/*.csv",
    # "notes-{SPAN}.csv". A run ingests the newest corpus_spans spans (1: only the newest; N: a rolling
    # window), each span at its newest version; the ingest report counts records per span. With spans,
    # split_source file patterns match names relative to each span's folder.
    corpus_spans: int = 1
    max_note_bytes: int = 1_000_000
    # ScrubberConfig fields (components/clinical_text/scrub.py), e.g. {"tagger_export_dir": ...} to run
    # a learned PHI tagger beside the rules. Empty: its defaults.
    scrubber_config: dict[str, Any] = dataclasses.field(default_factory=dict)

    # -- validation -------------------------------------------------------------------------------
    # Stop before training when ExampleValidator reports anomalies (raw or token-level).
    stop_on_anomalies: bool = True
    # Token-level caps checked on the transformed training data.
    max_unk_fraction: float = 0.05
    # A curated schema (schema.pbtxt) instead of SchemaGen's inference; "" to infer.
    schema_path: str = ""

    # -- tokenizer ---------------------------------------------------------------------------------
    vocab_size: int = 30000
    max_tokenizer_sentences: int = 1_000_000
    # When the corpus cannot support vocab_size: "error" stops with the largest size that works;
    # "lower" trains that size instead, with a warning (the tiny run, which must work on any corpus).
    vocab_size_fit: str = "error"
    # A vocabulary is trained once and reused by later runs: a run trains a new one only when no
    # earlier run of this pipeline trained one of this vocabulary_version. A new vocabulary makes every
    # pretrained model unusable, so it is an explicit act: raise vocabulary_version.
    vocabulary_version: int = 1
    # A reused vocabulary's drift on the new data, flagged by the AnomalyGate: the <unk> rate may rise
    # by at most max_unk_rate_increase (absolute), pieces per word by at most max_pieces_per_word_ratio.
    max_unk_rate_increase: float = 0.01
    max_pieces_per_word_ratio: float = 1.15

    # -- model ----------------------------------------------------------------------------------
    preset: str = "base-v2"
    seq_length: int = 128
    # Whole notes: a note longer than one sequence is read in windows of seq_length - 2 pieces, each
    # window_stride pieces after the one before, at most max_windows (so up to (max_windows - 1) *
    # window_stride + seq_length - 2 pieces, the served model's cap; longer notes are refused there
    # and cut in training). Note tasks pool the windows' logits (window_pooling: mean, max, or auto:
    # the better on the eval split); token tasks label each piece in its most central window.
    # 0: no windows, a note is cut at seq_length (text pairs always are: see `windows`).
    window_stride: int = 64
    max_windows: int = 64
    window_pooling: str = "auto"

    # -- pretraining (MLM + SOP) -----------------------------------------------------------------
    pretrain_steps: int = 10_000
    pretrain_batch_size: int = 64
    pretrain_learning_rate: float = 1.76e-3
    max_predictions: int = 20
    # Continue from a public checkpoint ("" = from scratch): an HF folder or a google-research one.
    init_checkpoint: str = ""
    init_checkpoint_format: str = "hf"  # hf, google
    # A later run continues from the pipeline's last pretrained model when it has the same vocabulary,
    # for continued_pretrain_steps steps (instead of pretrain_steps from scratch).
    continue_pretraining: bool = True
    continued_pretrain_steps: int = 1_000
    # Pretraining instances are made once, by the PretrainingExamples Beam step: dupe_factor passes over
    # the training notes, each with other sentence pairs and masks (google-research/albert uses 10 on
    # a large corpus; a small clinical corpus repeats its notes more often than that in pretrain_steps).
    pretrain_dupe_factor: int = 5
    masked_lm_prob: float = 0.15
    # Where both Trainers train (components/trainer/child.py): auto = a JAX child process when JAX is
    # installed and a GPU is present, else TensorFlow in the Trainer's process (faster on CPU:
    # bench/RESULTS.md); jax; tensorflow (the only one for multi-worker TF_CONFIG clusters).
    training_backend: str = "auto"

    # -- fine-tuning ----------------------------------------------------------------------------
    # "multi_label_classification": every label a note carries (label_names), independent sigmoids and
    # a threshold per label chosen on the eval split. "note_classification": one class per note; a
    # note with several labels takes the first of them in label_priority, or is left out of training.
    # "text_pair_classification": as note classification, on [CLS] text [SEP] text_b [SEP], the second
    # text from reader_config text_b_key (jsonl) or text_b_column (csv); a question and its passage.
    # "token_classification": BIO labels per word from the entity spans that the reader gives
    # (reader_config spans_key, or a span format), of entity_types.
    task: str = "multi_label_classification"
    entity_types: tuple[str, ...] = ()
    finetune_steps: int = 2_000
    finetune_batch_size: int = 32
    finetune_learning_rate: float = 5e-5
    eval_steps: int = 100
    # The recipe (albert_keras/finetune_loop.py). finetune_epochs > 0 trains that many passes over the
    # training split (windows included) instead of finetune_steps. The learning rate rises linearly
    # over the first finetune_warmup_fraction of the steps, then falls linearly to 0; gradients are
    # clipped to a global norm of finetune_clipnorm. Every finetune_eval_every steps (0: ten times a
    # run) the task's own metric is computed on the whole eval split (micro-F1 at chosen thresholds,
    # accuracy, entity F1); the best evaluation's weights are exported, and the run stops after
    # finetune_patience evaluations without a gain (0: never early). finetune_recipe "plain": no
    # evaluation, the last step exported (for comparison).
    finetune_epochs: float = 0.0
    finetune_warmup_fraction: float = 0.1
    finetune_eval_every: int = 0
    finetune_patience: int = 3
    finetune_clipnorm: float = 1.0
    finetune_recipe: str = "best"
    # Fine-tuning starts from the last blessed model when it has the same task, label set and
    # vocabulary (else from the pretrained backbone).
    warm_start_finetuning: bool = True

    # The classes, in class-id order: a fixed label set makes per-class and macro metrics possible
    # and keeps class ids stable across runs. Empty: the labels found in the training split.
    label_names: tuple[str, ...] = MTSAMPLES_SPECIALTIES
    # note_classification: which label a note listed under several takes, most preferred first (those
    # not listed rank after). Empty: such notes are left out of training, and counted.
    label_priority: tuple[str, ...] = ()

    # -- blessing -----------------------------------------------------------------------------------
    # The candidate must reach these on the eval split, and not fall behind the last blessed
    # model by more than `max_accuracy_drop`. min_macro_f1 is the floor of the task's F1: macro F1 of
    # note classes, entity F1 of tokens, blessing_metric of multi-label (whose drop is also bounded).
    min_accuracy: float = 0.0
    min_macro_f1: float = 0.0
    max_accuracy_drop: float = 0.01
    # multi_label_classification: which F1 blesses, micro (over every label decision) or macro (the
    # mean over labels, which weighs rare labels as much as common ones).
    blessing_metric: str = "micro_f1"

    # -- execution ----------------------------------------------------------------------------------
    # Beam options for the data components, e.g. --direct_running_mode=multi_processing locally, or
    # --runner=DataflowRunner (Flink, Spark) elsewhere.
    beam_args: tuple[str, ...] = ()
    seed: int = 42

    # -- retention -----------------------------------------------------------------------------------
    # After a local run (and `pipeline_runner.py prune`): keep the newest keep_serving_versions pushed
    # versions in serving_dir (never the newest, which serves, nor the last blessed model's), and the
    # pipeline-root artifacts of the newest keep_pipeline_runs runs (never those that later runs build
    # on: the vocabulary, the last pretrained and the last blessed model). 0: keep everything.
    keep_serving_versions: int = 5
    keep_pipeline_runs: int = 10

    def __post_init__(self) -> None:
        problems = []
        if self.corpus_format not in CORPUS_FORMATS:
            problems.append(f"corpus_format must be one of {CORPUS_FORMATS}, received {self.corpus_format!r}")
        if self.vocab_size_fit not in VOCAB_SIZE_FITS:
            problems.append(
                f"vocab_size_fit must be one of {VOCAB_SIZE_FITS}, received {self.vocab_size_fit!r}"
            )
        if self.init_checkpoint_format not in ("hf", "google"):
            problems.append(
                f"init_checkpoint_format must be hf or google, received {self.init_checkpoint_format!r}"
            )
        if self.task not in TASKS:
            problems.append(f"task must be one of {TASKS}, received {self.task!r}")
        if self.task == "multi_label_classification" and not self.label_names:
            problems.append("multi_label_classification needs label_names (the labels, in output order)")
        if self.blessing_metric not in BLESSING_METRICS:
            problems.append(
                f"blessing_metric must be one of {BLESSING_METRICS}, received {self.blessing_metric!r}"
            )
        unknown_priority = [
            name for name in self.label_priority if self.label_names and name not in self.label_names
        ]
        if unknown_priority:
            problems.append(f"label_priority names labels not in label_names: {unknown_priority}")
        settings = self.reader_settings
        if self.task == "text_pair_classification" and not (
            settings.get("text_b_key") or settings.get("text_b_column")
        ):
            problems.append(
                "text_pair_classification needs reader_config text_b_key (jsonl) or text_b_column (csv): "
                "where the second text is"
            )
        if not 0 <= self.window_stride <= self.seq_length - 2:
            problems.append(
                f"window_stride must be 0 (no windows) or at most seq_length - 2 = {self.seq_length - 2} "
                f"pieces, received {self.window_stride}"
            )
        if self.finetune_recipe not in FINETUNE_RECIPES:
            problems.append(
                f"finetune_recipe must be one of {FINETUNE_RECIPES}, received {self.finetune_recipe!r}"
            )
        if not 0.0 <= self.finetune_warmup_fraction < 1.0:
            problems.append(
                f"finetune_warmup_fraction must be in [0, 1), received {self.finetune_warmup_fraction}"
            )
        for name in ("finetune_epochs", "finetune_eval_every", "finetune_patience", "finetune_clipnorm"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must not be negative, received {getattr(self, name)}")
        if self.max_windows < 1:
            problems.append(f"max_windows must be at least 1, received {self.max_windows}")
        if self.window_pooling not in WINDOW_POOLINGS:
            problems.append(
                f"window_pooling must be one of {WINDOW_POOLINGS}, received {self.window_pooling!r}"
            )
        if self.task == "token_classification" and not self.entity_types:
            problems.append("token_classification needs entity_types (the span types, in label order)")
        spans_given = self.corpus_format in SPAN_FORMATS or self.reader_settings.get("spans_key")
        if self.task == "token_classification" and not spans_given:
            problems.append(
                "token_classification needs reader_config.spans_key (jsonl) or an i2b2 corpus: where the "
                "spans are"
            )
        if "train" not in self.splits or "eval" not in self.splits:
            problems.append(f"splits must include train and eval, received {sorted(self.splits)}")
        if self.training_backend not in ("auto", "jax", "tensorflow"):
            problems.append(
                f"training_backend must be auto, jax or tensorflow, received {self.training_backend!r}"
            )
        if self.pretrain_dupe_factor < 1 or not 0 < self.masked_lm_prob < 1:
            problems.append(
                "pretrain_dupe_factor must be at least 1 and masked_lm_prob in (0, 1), received "
                f"{self.pretrain_dupe_factor} and {self.masked_lm_prob}"
            )
        for name in ("corpus_spans", "vocabulary_version"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1, received {getattr(self, name)}")
        for name in ("continued_pretrain_steps", "keep_serving_versions", "keep_pipeline_runs"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must not be negative, received {getattr(self, name)}")
        if self.max_unk_rate_increase < 0 or self.max_pieces_per_word_ratio < 1:
            problems.append(
                "max_unk_rate_increase must be at least 0 and max_pieces_per_word_ratio at least 1, received "
                f"{self.max_unk_rate_increase} and {self.max_pieces_per_word_ratio}"
            )
        for name in ("pretrain_steps", "finetune_steps", "seq_length", "vocab_size"):
            if getattr(self, name) < 0 or (name != "pretrain_steps" and getattr(self, name) == 0):
                problems.append(f"{name} must be positive, received {getattr(self, name)}")
        if problems:
            raise ValueError("Invalid pipeline configuration: " + "; ".join(problems))

    @property
    def reader_settings(self) -> dict[str, Any]:
        """The reader settings the ExampleGen gets: `reader_config`, or the format's defaults."""
        return (
            dict(self.reader_config)
            if self.reader_config
            else dict(READER_DEFAULTS.get(self.corpus_format, {}))
        )

    @property
    def windows(self) -> int:
        """The window stride the components get: window_stride, or 0 for text pairs, which are packed
        into one sequence (the longer text cut first)."""
        return 0 if self.task == "text_pair_classification" else self.window_stride

    @property
    def pipeline_root(self) -> str:
        return os.path.join(self.output_dir, "pipeline")

    @property
    def metadata_path(self) -> str:
        return os.path.join(self.output_dir, "metadata.sqlite")

    @property
    def serving_dir(self) -> str:
        return os.path.join(self.output_dir, "serving")

    def replace(self, **changes: Any) -> PipelineConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PipelineConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"Unknown pipeline configuration keys: {unknown}; known: {sorted(known)}")
        values = dict(values)
        for name in ("beam_args", "label_names", "entity_types", "label_priority"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)

    @classmethod
    def from_file(cls, path: str, **overrides: Any) -> PipelineConfig:
        with open(path, encoding="utf-8") as f:
            return cls.from_dict({**json.load(f), **overrides})


# The configuration of the default local run and the tests: the bundled sample, a tiny ALBERT.
TINY = dict(
    preset="tiny",
    seq_length=64,
    window_stride=32,
    vocab_size=2000,
    vocab_size_fit="lower",
    max_tokenizer_sentences=50_000,
    pretrain_steps=20,
    continued_pretrain_steps=10,
    pretrain_dupe_factor=2,
    pretrain_batch_size=8,
    max_predictions=8,
    finetune_steps=30,
    finetune_batch_size=8,
    finetune_learning_rate=1e-3,
    finetune_eval_every=10,
    eval_steps=5,
    max_unk_fraction=0.2,
)
