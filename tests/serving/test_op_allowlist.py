"""The TF Serving 2.16 op allowlist, how it is derived, and the SavedModel check against it."""

import io
import random
import re
import zipfile
from pathlib import Path

import keras_hub
import pytest
import sentencepiece as spm
import tensorflow as tf
import tensorflow_text as tf_text
from google.protobuf import text_format
from tensorflow.core.protobuf import saved_model_pb2

from serving import derive_op_allowlist as derive
from serving.op_allowlist import (
    DEFAULT_ALLOWLIST,
    UnservableModelError,
    assert_servable,
    check_saved_model,
    load_allowlist,
    load_allowlist_sections,
    main,
    read_saved_model,
    saved_model_ops,
)

CORE = f"tensorflow {tf.__version__}"
TEXT = f"tensorflow-text {derive.SERVER_TEXT_VERSION}"
NEWER_TEXT_OPS = {"TFText>RoundRobinTrim", "TFText>RoundRobinGenerateMasks", "TFText>Utf8Binarize"}


@pytest.fixture(scope="module")
def sentencepiece_model() -> bytes:
    """A tiny unigram model (vocab 80) trained on synthetic clinical-looking words."""
    stems = ["card", "neur", "gastr", "derm", "hepat", "nephr", "oste", "arthr", "my", "pulmon"]
    endings = ["itis", "ology", "algia", "ectomy", "opathy", "osis"]
    words = [stem + ending for stem in stems for ending in endings]
    words += ["patient", "reports", "mild", "pain", "left", "knee", "denies", "fever", "cough", "stable"]
    rng = random.Random(0)
    sentences = [" ".join(rng.choice(words) for _ in range(9)) for _ in range(200)]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=model, vocab_size=80, minloglevel=2
    )
    return model.getvalue()


def _save(module: tf.Module, directory: Path) -> Path:
    tf.saved_model.save(module, str(directory))
    return directory


def test_sentencepiece_tokenizer_padded_with_core_ops_is_servable(tmp_path, sentencepiece_model):
    class Tokenize(tf.Module):
        def __init__(self):
            super().__init__()
            self.tokenizer = tf_text.SentencepieceTokenizer(model=sentencepiece_model)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def __call__(self, text):
            return self.tokenizer.tokenize(text).to_tensor(default_value=0, shape=[None, 16])

    module = Tokenize()
    ids = module(tf.constant(["patient reports cardiology pain", "nephritis"]))
    assert ids.shape == (2, 16) and int(tf.reduce_max(ids)) < 80
    export = _save(module, tmp_path / "tokenize")

    result = check_saved_model(export)
    assert result.ok, result.disallowed
    assert {"SentencepieceOp", "SentencepieceTokenizeOp", "RaggedTensorToTensor"} <= result.ops_used
    assert_servable(export)


def test_round_robin_packing_needs_an_op_the_server_lacks(tmp_path, capsys):
    packer = keras_hub.layers.MultiSegmentPacker(
        sequence_length=8, start_value=1, end_value=2, truncate="round_robin"
    )
    segment = tf.RaggedTensorSpec([None, None], tf.int32)

    class Pack(tf.Module):
        @tf.function(input_signature=[segment, segment])
        def __call__(self, first, second):
            token_ids, _ = packer((first, second))
            return token_ids

    module = Pack()
    packed = module(tf.ragged.constant([[5, 6, 7, 8, 9]]), tf.ragged.constant([[10, 11, 12, 13]]))
    assert packed.shape == (1, 8)
    export = _save(module, tmp_path / "pack")

    assert check_saved_model(export).disallowed == ("TFText>RoundRobinTrim",)
    with pytest.raises(UnservableModelError, match="TFText>RoundRobinTrim"):
        assert_servable(export)
    assert main([str(export)]) == 1
    assert "TFText>RoundRobinTrim" in capsys.readouterr().out


def test_python_callbacks_are_not_servable(tmp_path):
    class Callback(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def __call__(self, values):
            return tf.py_function(lambda v: v * 2.0, [values], tf.float32)

    export = _save(Callback(), tmp_path / "callback")
    assert check_saved_model(export).disallowed == ("EagerPyFunc",)


def test_ops_inside_nested_functions_and_loop_bodies_are_found(tmp_path):
    @tf.function
    def count_characters(words):
        def body(i, total):
            return i + 1, total + tf.strings.length(words[i])

        _, total = tf.while_loop(lambda i, _: i < tf.size(words), body, [0, 0])
        return total

    class Nested(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def __call__(self, words):
            return count_characters(words) * 2

    module = Nested()
    assert int(module(tf.constant(["ab", "cde"]))) == 10
    export = _save(module, tmp_path / "nested")

    ops = saved_model_ops(export)
    top_level = {node.op for graph in read_saved_model(export).meta_graphs for node in graph.graph_def.node}
    assert "StringLength" in ops and "StringLength" not in top_level
    assert ops & {"While", "StatelessWhile"}
    assert not [op for op in ops if op.startswith("__inference")]


def _hand_made_saved_model() -> saved_model_pb2.SavedModel:
    saved = saved_model_pb2.SavedModel()
    first = saved.meta_graphs.add()
    first.graph_def.node.add(name="text", op="Placeholder")
    first.graph_def.node.add(name="call", op="helper")
    helper = first.graph_def.library.function.add()
    helper.signature.name = "helper"
    helper.node_def.add(name="length", op="StringLength")
    second = saved.meta_graphs.add()
    second.graph_def.node.add(name="binarize", op="TFText>Utf8Binarize")
    return saved


def test_every_meta_graph_counts_and_calls_by_function_name_are_not_ops(tmp_path):
    binary, text = tmp_path / "binary", tmp_path / "text"
    binary.mkdir()
    text.mkdir()
    (binary / "saved_model.pb").write_bytes(_hand_made_saved_model().SerializeToString())
    (text / "saved_model.pbtxt").write_text(text_format.MessageToString(_hand_made_saved_model()))

    for export in (binary, text):
        assert saved_model_ops(export) == {"Placeholder", "StringLength", "TFText>Utf8Binarize"}
        assert check_saved_model(export).disallowed == ("TFText>Utf8Binarize",)
    assert check_saved_model(binary, allowlist=frozenset()).disallowed == (
        "Placeholder",
        "StringLength",
        "TFText>Utf8Binarize",
    )


def test_command_line_passes_a_servable_model_and_rejects_a_missing_one(tmp_path, capsys):
    saved = saved_model_pb2.SavedModel()
    saved.meta_graphs.add().graph_def.node.add(name="ids", op="SentencepieceTokenizeOp")
    (tmp_path / "saved_model.pb").write_bytes(saved.SerializeToString())

    assert main([str(tmp_path)]) == 0
    assert "1 op types used" in capsys.readouterr().out
    assert main([str(tmp_path / "absent")]) == 2
    assert "no saved_model.pb" in capsys.readouterr().err


def test_allowlist_file_format_is_enforced(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("# header\n\n[one]\nA\nB>C\n[two]\nD\n")
    assert load_allowlist_sections(good) == {"one": {"A", "B>C"}, "two": {"D"}}
    assert load_allowlist(good) == {"A", "B>C", "D"}

    for bad_text in ("A\n[one]\nB\n", "[one]\nnot an op\n"):
        bad = tmp_path / "bad.txt"
        bad.write_text(bad_text)
        with pytest.raises(ValueError, match=r"line \d"):
            load_allowlist(bad)


def test_committed_core_section_is_this_tensorflows_own_ops():
    sections = load_allowlist_sections()
    assert set(sections) == {CORE, TEXT}
    assert sections[CORE] == derive.core_tf_ops()
    needed = {"StatefulPartitionedCall", "ParseExampleV2", "RaggedTensorToTensor", "StringSplitV2"}
    assert needed <= sections[CORE]
    assert not sections[CORE] & derive.PYTHON_RUNTIME_OPS
    # tensorflow_text is imported here, so the C++ registry has its ops; the core list must not.
    assert "SentencepieceOp" in derive.registered_op_names()
    assert "SentencepieceOp" not in derive.core_tf_ops()


def test_committed_header_counts_match_the_sections():
    header = DEFAULT_ALLOWLIST.read_text()
    for title, ops in load_allowlist_sections().items():
        match = re.search(rf"^# \[{re.escape(title)}\] (\d+) ops", header, re.MULTILINE)
        assert match and int(match.group(1)) == len(ops), title


def test_committed_text_section_is_an_older_tensorflow_text():
    sections = load_allowlist_sections()
    text = sections[TEXT]
    installed = derive.check_reader_on_installed_text()
    assert text < installed
    assert installed - text == NEWER_TEXT_OPS
    assert {
        "SentencepieceOp",
        "SentencepieceTokenizeOp",
        "SentencepieceDetokenizeOp",
        "WordpieceTokenizeWithOffsets",
        "FastWordpieceTokenizeWithOffsets",
        "NormalizeUTF8",
        "RegexSplitWithOffsets",
    } <= text
    assert not text & sections[CORE]


def test_static_reader_agrees_with_loading_and_with_generated_wrappers():
    libraries = derive.installed_text_libraries()
    assert len(libraries) > 10
    for library in libraries:
        loaded = derive.loaded_library_ops(library)
        assert derive.kernel_op_names(library.read_bytes(), library.name) == loaded, library.name
        wrappers = tf.load_op_library(str(library))
        assert all(hasattr(wrappers, derive.snake_case(op)) for op in loaded), library.name


def _wheel_from_installed_text(path: Path, extra_python: str = "") -> Path:
    """A wheel-shaped zip of the installed tensorflow-text's op libraries and Python files."""
    package = Path(tf_text.__file__).parent
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as wheel:
        for file in package.rglob("*"):
            if file.suffix in (".so", ".py") and "pybinds" not in file.parts:
                wheel.write(file, f"tensorflow_text/{file.relative_to(package).as_posix()}")
        if extra_python:
            wheel.writestr("tensorflow_text/python/ops/extra.py", extra_python)
    return path


def test_wheel_reader_returns_the_kernel_ops_and_checks_the_wheels_python(tmp_path):
    wheel = _wheel_from_installed_text(tmp_path / "text.whl")
    assert derive.text_ops_from_wheel(wheel) == derive.check_reader_on_installed_text()

    unknown = "gen_extra = load_library.load_op_library('_extra.so')\ngen_extra.made_up_tokenize(x)\n"
    broken = _wheel_from_installed_text(tmp_path / "broken.whl", extra_python=unknown)
    with pytest.raises(ValueError, match="made_up_tokenize"):
        derive.text_ops_from_wheel(broken)


def test_static_reader_rejects_what_is_not_an_x86_64_library():
    with pytest.raises(ValueError, match="not a little-endian x86-64"):
        derive.kernel_op_names(b"#!/bin/sh\n", "script.sh")
