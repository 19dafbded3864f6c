"""The learned PHI tagger: a token-classification export's BIO labels as scrubber findings, in ingestion.

Most tests use `RuleExport`, a SavedModel with the export's `serving_default` contract (outputs, shapes,
dtypes; the export's own in-graph normalization and piece packing) whose pieces are words, digit runs
and single symbols, labelled from a fixed table. One test runs a real `TokenServingModule` export of a
tiny ALBERT whose classifier is forced to one label. All text is synthetic.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text as tf_text

from albert_keras import AlbertBackbone, AlbertTokenClassifier, bio_labels
from components.clinical_example_gen import executor, text_steps
from components.clinical_example_gen.examples import SPAN_STARTS, to_example
from components.clinical_example_gen.i2b2_reader import parse_i2b2
from components.clinical_example_gen.records import NoteRecord, ProcessedNote, Reject, Span
from components.clinical_text import phi_tagger, phi_tokens
from components.clinical_text.phi_tagger import TokenTagger, bio_entities
from components.clinical_text.scrub import Scrubber, ScrubberConfig
from components.sentencepiece_tokenizer.token_labels import pack_labels
from components.sentencepiece_tokenizer.tokenize_graph import NotePacker
from components.transform_module import normalize_in_graph
from tests.components.clinical_example_gen.test_executor import run_executor

REPO = Path(__file__).resolve().parents[2]
TYPES = ["PATIENT", "DOCTOR", "AGE", "STATE", "IDNUM", "VENDOR"]
NAMES = bio_labels(TYPES)
# Pieces: runs of letters, runs of digits, and every other non-space character alone.
PIECE_DELIMITERS = r"\s+|\p{Nd}+|[^\p{L}\p{Nd}\s]"
KEPT_DELIMITERS = r"\p{Nd}+|[^\p{L}\p{Nd}\s]"
LABELS = {
    "Zorblat": "B-PATIENT",
    "Quux": "I-PATIENT",
    "Vantreece": "B-DOCTOR",
    "92": "B-AGE",
    "45": "B-AGE",
    "Ohio": "B-STATE",
    "123456": "B-IDNUM",
    "Acme": "B-VENDOR",
    "\ue000": "I-PATIENT",  # a span mark inside a name (see the text steps test)
}
SEQ = 12  # 10 pieces a window
NO_NAME_RULES = {"titled_names": False, "untitled_names": False, "locations": False}


class RuleExport(tf.Module):
    """`serving_default` as `finetune.TokenServingModule` (components/trainer) exports it, labels from
    `LABELS`."""

    def __init__(self, seq_length: int = SEQ, cap_chars: int = 0):
        super().__init__()
        self.seq_length = seq_length
        self.cap_chars = (
            cap_chars  # > 0: refuses longer texts, as a windowed model refuses notes past its cap
        )
        self.label_names = tf.constant(NAMES)
        ids = [NAMES.index(label) for label in LABELS.values()]
        initializer = tf.lookup.KeyValueTensorInitializer(list(LABELS), tf.constant(ids, tf.int64))
        self.table = tf.lookup.StaticHashTable(initializer, default_value=0)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve_text(self, text):
        if self.cap_chars:
            fits = tf.reduce_all(tf.strings.length(text, unit="UTF8_CHAR") <= self.cap_chars)
            tf.debugging.Assert(fits, ["rejected: past the cap"])
        pieces, starts, ends = tf_text.regex_split_with_offsets(text, PIECE_DELIMITERS, KEPT_DELIMITERS)
        # [CLS], [SEP] and padding are labelled B-PATIENT: only their offsets (-1) keep them out.
        # Looked up as NFKC, the way the real export's tokenizer normalizes while offsets stay on the text.
        normalized = tf.ragged.map_flat_values(tf_text.normalize_utf8, pieces, "NFKC")
        label_ids = pack_labels(tf.ragged.map_flat_values(self.table.lookup, normalized), self.seq_length, 1)
        return {
            "probabilities": tf.one_hot(label_ids, len(NAMES)),  # (batch, seq, labels)
            "label_ids": label_ids,  # (batch, seq)
            "piece_starts": pack_labels(starts, self.seq_length, ignore_label=-1),
            "piece_ends": pack_labels(ends, self.seq_length, ignore_label=-1),
            "label_names": tf.tile(self.label_names[None, :], [tf.shape(text)[0], 1]),  # (batch, labels)
        }


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> str:
    module = RuleExport()
    folder = tmp_path_factory.mktemp("serving") / "1"
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve_text})
    return str(folder)


@pytest.fixture(scope="module")
def tagger(export) -> TokenTagger:
    return TokenTagger(export)


def found(tagger: TokenTagger, text: str) -> list[tuple[str, str]]:
    return sorted((text[start:end], kind) for start, end, kind in tagger.tag(text))


def test_bio_labels_become_entities_lenient_on_i_and_blind_to_special_positions():
    labels = ["B-PATIENT", "B-DOCTOR", "I-DOCTOR", "O", "I-PATIENT", "I-PATIENT", "I-AGE", "B-AGE", "O"]
    starts = [-1, 0, 4, 9, 12, 15, 20, 24, -1]
    ends = [-1, 4, 8, 11, 15, 19, 23, 27, -1]
    assert bio_entities(labels, starts, ends) == [
        (0, 8, "DOCTOR"),  # B then I of the same type; [CLS] labelled B-PATIENT counts for nothing
        (12, 19, "PATIENT"),  # an I after O starts one
        (20, 23, "AGE"),  # an I of another type starts one
        (24, 27, "AGE"),  # a B after an I of its type starts a new one
    ]


def test_spans_are_character_offsets_of_the_text_after_multibyte_characters(tagger):
    text = "Ménière 日本語 — Zorblat Quux seen; then Quux again."
    assert found(tagger, text) == [("Quux", "name"), ("Zorblat Quux", "name")]
    assert tagger.label_names == NAMES and tagger.seq_length == SEQ


def test_entity_types_map_to_kinds_and_safe_harbor_keeps_states_and_young_ages(export, tagger):
    text = "Aged 92 and 45, of Ohio; id AB123456 from Acme."
    assert found(tagger, text) == [("92", "age"), ("AB123456", "id"), ("Acme", "other")]
    overridden = TokenTagger(export, kinds={"state": "location", "VENDOR": None}, all_ages=True)
    assert found(overridden, text) == [("45", "age"), ("92", "age"), ("AB123456", "id"), ("Ohio", "location")]
    assert phi_tagger.age_is_phi("ninety-two") and phi_tagger.age_is_phi("101")
    assert not phi_tagger.age_is_phi("eighty-nine") and not phi_tagger.age_is_phi("89 yo")


def test_text_that_nfkc_changes_is_tagged_at_its_own_offsets(export):
    tagger = TokenTagger(export)
    text = "ﬁ…  Ｚｏｒｂｌａｔ Quux, aged 92"  # NFKC: "fi", "...", "Zorblat"; the model reads it as such
    assert found(tagger, text) == [("92", "age"), ("Ｚｏｒｂｌａｔ Quux", "name")]


def test_a_long_text_is_tagged_in_windows_to_its_end(export):
    filler = " ".join(["stable"] * 40)
    text = f"Zorblat seen.\n{filler} Vantreece called.\n{filler}, then Zorblat Quux"
    windowed = TokenTagger(export)
    assert found(windowed, text) == [("Vantreece", "name"), ("Zorblat", "name"), ("Zorblat Quux", "name")]
    assert windowed.counts["windows"] > 10 and windowed.window_chars == 30
    # One window for the whole text: the model reads 10 pieces, and the rest is fed again.
    refed = TokenTagger(export, window_chars=100_000, batch_size=2)
    assert found(refed, text) == found(windowed, text)
    assert refed.counts["windows fed again"] >= len(text.split()) // 10 - 1


def test_windows_a_model_refuses_as_past_its_cap_are_fed_again_in_halves(tmp_path):
    module = RuleExport(seq_length=1000, cap_chars=60)
    tf.saved_model.save(module, str(tmp_path), signatures={"serving_default": module.serve_text})
    filler = " ".join(["stable"] * 40)
    text = f"Zorblat seen.\n{filler} Vantreece called.\n{filler}, then Zorblat Quux"
    halving = TokenTagger(str(tmp_path), batch_size=4)
    assert found(halving, text) == [("Vantreece", "name"), ("Zorblat", "name"), ("Zorblat Quux", "name")]
    assert halving.counts["windows halved"] >= 1


def _record(text: str, spans: tuple[Span, ...] | None = None) -> NoteRecord:
    return NoteRecord("n1", "g1", text, (), {}, "notes.jsonl:line 1", spans=spans)


def test_text_steps_scrub_the_union_of_rules_and_the_configured_tagger(export):
    text = "Zorblat Quux was seen on 03/14/2021 by Dr. Brannagh, aged 92."
    rules = text_steps.TextSteps(NO_NAME_RULES)(_record(text))
    assert "Zorblat Quux" in rules.text and "[DATE]" in rules.text
    steps = text_steps.TextSteps({**NO_NAME_RULES, "titled_names": True, "tagger_export_dir": export})
    both = steps(_record(text))
    assert both.text == "[NAME] was seen on [DATE] by Dr. [NAME], aged [AGE]."
    assert both.phi_counts == {phi_tokens.NAME: 2, phi_tokens.DATE: 1, phi_tokens.AGE: 1}


def test_tagger_findings_never_remove_an_entity_span_mark(export):
    text = "Zorblat Quux has ataxia."
    start = text.index("Quux")
    record = _record(text, spans=(Span(start, start + 4, "Mention"),))
    note = text_steps.TextSteps({**NO_NAME_RULES, "tagger_export_dir": export})(record)
    assert isinstance(note, ProcessedNote), note
    assert note.text == "[NAME] [NAME] has ataxia."
    assert [note.text[span.start : span.end] for span in note.spans] == ["[NAME]"]


def test_a_missing_or_wrong_export_fails_clearly(tmp_path, export):
    base = tmp_path / "serving"
    (base / "1").mkdir(parents=True)
    for folder in (tmp_path / "nothing", base):
        with pytest.raises(FileNotFoundError, match=r"tagger export not found: .* holds no saved_model\.pb"):
            text_steps.TextSteps({"tagger_export_dir": str(folder)})

    class NoteClassifier(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def serve_text(self, text):
            return {
                "probabilities": tf.ones([tf.shape(text)[0], 2]) / 2,
                "label_names": tf.constant(["a", "b"]),
            }

    module = NoteClassifier()
    tf.saved_model.save(
        module, str(tmp_path / "classifier"), signatures={"serving_default": module.serve_text}
    )
    with pytest.raises(ValueError, match="not a token-classification export: serving_default lacks"):
        TokenTagger(str(tmp_path / "classifier"))
    with pytest.raises(ValueError, match="tagger_kinds must map entity types to one of"):
        ScrubberConfig(tagger_kinds={"STATE": "province"})
    with pytest.raises(ValueError, match="tagger kinds must be one of"):
        TokenTagger(export, kinds={"STATE": "province"})


def test_tagger_settings_travel_as_json():
    values = {"tagger_export_dir": "models/deid/3", "tagger_kinds": {"STATE": "location", "PROFESSION": None}}
    config = ScrubberConfig.from_dict(values)
    assert config.tagger_kinds == (("PROFESSION", None), ("STATE", "location"))
    assert ScrubberConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    hash(config)


def test_ingestion_loads_the_tagger_once_per_worker_and_checks_it_before_beam(tmp_path, export, monkeypatch):
    loads = []

    class Counting(TokenTagger):
        def __init__(self, *args, **kwargs):
            loads.append(args)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(phi_tagger, "TokenTagger", Counting)
    process = executor._ProcessNotes({"tagger_export_dir": export})
    process.setup()
    # Elements travel with their corpus span (None: a path without {SPAN}).
    processed = [next(process.process((None, _record(f"Note {index}: Zorblat seen.")))) for index in range(3)]
    notes = [note for span, note in processed if span is None]
    assert len(loads) == 1 and all(note.text.endswith("[NAME] seen.") for note in notes)

    corpus = tmp_path / "notes.jsonl"
    corpus.write_text(json.dumps({"id": "a", "text": "Zorblat Quux was seen by Vantreece."}) + "\n")
    with pytest.raises(FileNotFoundError, match="tagger export not found"):
        run_executor(
            tmp_path / "missing", corpus, "jsonl", scrubber_config={"tagger_export_dir": str(tmp_path)}
        )
    run = run_executor(tmp_path / "out", corpus, "jsonl", scrubber_config={"tagger_export_dir": export})
    written = b"".join(gzip.decompress(path.read_bytes()) for path in (tmp_path / "out").rglob("*.gz"))
    assert b"[NAME] was seen by [NAME]." in written and b"Zorblat" not in written
    assert run.summary["kept_examples"] == 1


def test_the_i2b2_config_loads_and_its_notes_keep_their_spans_through_ingestion():
    from components.clinical_example_gen.component import ClinicalExampleGen
    from pipeline.configs import TINY, PipelineConfig

    for path in sorted((REPO / "pipeline").glob("*.json")):
        PipelineConfig.from_file(str(path), **TINY)
    config = PipelineConfig.from_file(str(REPO / "pipeline" / "i2b2_deid_tokens.json"), **TINY)
    assert (config.task, config.corpus_format) == ("token_classification", "i2b2")
    assert set(config.entity_types) <= set(phi_tagger.I2B2_KINDS)
    ClinicalExampleGen(
        input_base=config.corpus_path,
        input_format=config.corpus_format,
        reader_config=config.reader_settings,
        scrubber_config=config.scrubber_config,
    )

    xml = (
        '<?xml version="1.0" encoding="UTF-8" ?><deIdi2b2><TEXT><![CDATA[Record date: 2090-07-12\n'
        "Seen by Dr. Quill at Mercy Hospital.]]></TEXT><TAGS>"
        '<DATE id="P0" start="13" end="23" text="2090-07-12" TYPE="DATE" />'
        '<NAME id="P1" start="36" end="41" text="Quill" TYPE="DOCTOR" />'
        '<LOCATION id="P2" start="45" end="59" text="Mercy Hospital" TYPE="HOSPITAL" /></TAGS></deIdi2b2>'
    )
    text, spans = parse_i2b2(xml.encode())
    note = text_steps.TextSteps(config.scrubber_config)(_record(text, spans))
    assert not isinstance(note, Reject)
    assert [span.type for span in note.spans] == ["DATE", "DOCTOR", "HOSPITAL"]
    date = note.text[note.spans[0].start : note.spans[0].end]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", date) and date != "2090-07-12"  # a surrogate, not a token
    assert len(to_example(note).features.feature[SPAN_STARTS].int64_list.value) == 3


class _TransformLayer(tf.Module):
    """The Transform's text features, as the Transform's layer gives them to the export."""

    def __init__(self, model_proto: bytes, seq_length: int):
        super().__init__()
        self.packer = NotePacker(model_proto, seq_length)

    def __call__(self, features: dict) -> dict:
        return self.packer(normalize_in_graph(features["text"]))


class _PackedTransform:
    """Stands in for `tft.TFTransformOutput`: what `TokenServingModule` asks of it."""

    def __init__(self, model_proto: bytes, seq_length: int):
        self.model_proto, self.seq_length = model_proto, seq_length

    def transform_features_layer(self) -> _TransformLayer:
        return _TransformLayer(self.model_proto, self.seq_length)

    def raw_feature_spec(self):
        return {"text": tf.io.FixedLenFeature([], tf.string)}

    def transformed_feature_spec(self):
        return {"token_ids": tf.io.FixedLenFeature([self.seq_length], tf.int64)}


@pytest.mark.slow
def test_a_real_token_export_is_tagged_to_the_end_of_a_long_note(tmp_path):
    from components.sentencepiece_tokenizer.train import train_sentencepiece
    from components.trainer.finetune import TokenServingModule

    words = ["Ménière", "patient", "seen", "today", "stable", "chest", "pain", "follow", "up", "plan"]
    lines = [" ".join(words[index:] + words[:index]) for index in range(len(words))] * 20
    trained = train_sentencepiece(lines, tmp_path / "spm", vocab_size=60, hard_vocab_limit=False)
    model_proto = Path(trained.model_path).read_bytes()
    keras.utils.set_random_seed(0)
    backbone = AlbertBackbone.from_preset("tiny", vocab_size=200, max_position_embeddings=16)
    classifier = AlbertTokenClassifier(backbone, num_labels=len(NAMES))
    kernel, bias = classifier.output_dense.get_weights()
    forced = np.full_like(bias, -10.0)
    forced[NAMES.index("I-PATIENT")] = 10.0  # every position I-PATIENT: one entity per window
    classifier.output_dense.set_weights([np.zeros_like(kernel), forced])
    module = TokenServingModule(classifier, _PackedTransform(model_proto, 16), NAMES, model_proto)
    tf.saved_model.save(module, str(tmp_path / "export"), signatures={"serving_default": module.serve_text})

    tagger = TokenTagger(str(tmp_path / "export"), window_chars=100_000)
    text = "Ménière seen today.\n" + " ".join(words * 6)
    spans = sorted(tagger.tag(text))
    assert tagger.seq_length == 16 and tagger.counts["windows fed again"] >= 3
    covered = set().union(*(range(start, end) for start, end, _ in spans))
    assert {index for index, char in enumerate(text) if not char.isspace()} <= covered
    assert not any(text[start].isspace() or text[end - 1].isspace() for start, end, _ in spans)
    assert {kind for _, _, kind in spans} == {"name"}
    assert text[spans[0][0] : spans[0][1]].startswith("Ménière")
    scrubbed = Scrubber(ScrubberConfig(**NO_NAME_RULES), taggers=[tagger]).scrub(text).text
    assert re.fullmatch(r"(\[NAME\]\s*)+", scrubbed)
