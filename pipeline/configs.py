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

TASKS = ("note_classification", "token_classification")
CORPUS_FORMATS = ("csv", "mimic", "text_dir", "jsonl", "fhir", "i2b2")
#: Formats whose every record carries its entity spans (i2b2's XML tags), with no `spans_key` to set.
SPAN_FORMATS = ("i2b2",)
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
    corpus_format: str = "csv"  # csv, mimic, text_dir, jsonl, fhir, i2b2
    # Reader settings for the format (components/clinical_example_gen/readers.py), e.g. for CSV which
    # columns hold the id, the text, the label and the group that splits must not divide. Empty: the
    # format's own defaults (READER_DEFAULTS), so changing the format changes them; see reader_settings.
    reader_config: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Split name -> relative weight; groups (patients, samples) never straddle splits.
    splits: dict[str, int] = dataclasses.field(default_factory=lambda: {"train": 8, "eval": 1, "test": 1})
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

    # -- model ----------------------------------------------------------------------------------
    preset: str = "base-v2"
    seq_length: int = 128

    # -- pretraining (MLM + SOP) -----------------------------------------------------------------
    pretrain_steps: int = 10_000
    pretrain_batch_size: int = 64
    pretrain_learning_rate: float = 1.76e-3
    max_predictions: int = 20
    # Continue from a public checkpoint ("" = from scratch): an HF folder or a google-research one.
    init_checkpoint: str = ""
    init_checkpoint_format: str = "hf"  # hf, google

    # -- fine-tuning ----------------------------------------------------------------------------
    # "note_classification": one class per note (label_names). "token_classification": BIO labels per
    # piece from the entity spans that the reader gives (reader_config spans_key), of entity_types.
    task: str = "note_classification"
    entity_types: tuple[str, ...] = ()
    finetune_steps: int = 2_000
    finetune_batch_size: int = 32
    finetune_learning_rate: float = 5e-5
    eval_steps: int = 100

    # The classes, in class-id order: a fixed label set makes per-class and macro metrics possible
    # and keeps class ids stable across runs. Empty: the labels found in the training split.
    label_names: tuple[str, ...] = MTSAMPLES_SPECIALTIES

    # -- blessing -----------------------------------------------------------------------------------
    # The candidate must reach these on the eval split, and not fall behind the last blessed
    # model by more than `max_accuracy_drop`.
    min_accuracy: float = 0.0
    min_macro_f1: float = 0.0
    max_accuracy_drop: float = 0.01

    # -- execution ----------------------------------------------------------------------------------
    # Beam options for the data components, e.g. --direct_running_mode=multi_processing locally, or
    # --runner=DataflowRunner (Flink, Spark) elsewhere.
    beam_args: tuple[str, ...] = ()
    seed: int = 42

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
        for name in ("beam_args", "label_names", "entity_types"):
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
    vocab_size=2000,
    vocab_size_fit="lower",
    max_tokenizer_sentences=50_000,
    pretrain_steps=20,
    pretrain_batch_size=8,
    max_predictions=8,
    finetune_steps=30,
    finetune_batch_size=8,
    finetune_learning_rate=1e-3,
    eval_steps=5,
    max_unk_fraction=0.2,
)
