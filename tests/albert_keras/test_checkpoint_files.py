"""Checkpoint files: HF (safetensors and torch .bin), google-research TF1, keras-hub presets.

HF checkpoints are written by HF transformers itself, with every weight random, in the side
environment (tests/fixtures/hf_checkpoint_worker.py); they are loaded here and their outputs compared
with HF's. Exports are loaded back by transformers. The TF1 checkpoint is written with google-research's
variable names from the HF weights by a table in this file, independent of the converter's.
"""

from __future__ import annotations

import json
import os
import pathlib
import pickle
import subprocess
import zipfile

import keras
import numpy as np
import pytest

from albert_keras import AlbertBackbone, AlbertConfig, AlbertPretrainer
from albert_keras.convert.google import load_google_model
from albert_keras.convert.hf_files import label_names, load_hf_model, read_hf_state, save_hf_model
from albert_keras.convert.torch_pickle import load_torch_state_dict
from tests.albert_keras.util import backbone_inputs, max_abs_diff, randomize_weights

REPO = pathlib.Path(__file__).parents[2]
HF_PYTHON = REPO / ".venv-hf" / "bin" / "python"
WORKER = REPO / "tests" / "fixtures" / "hf_checkpoint_worker.py"
TOLERANCE = 1e-5
ARCHITECTURES = (
    "AlbertModel",
    "AlbertForPreTraining",
    "AlbertForSequenceClassification",
    "AlbertForTokenClassification",
    "AlbertForQuestionAnswering",
    "AlbertForMultipleChoice",
)


def _hf(*args: str) -> None:
    if not HF_PYTHON.exists():
        if os.environ.get("CI"):
            pytest.fail("CI must run the HF checks: .venv-hf is missing (scripts/setup_hf_env.sh)")
        pytest.skip("HF reference environment not installed (scripts/setup_hf_env.sh)")
    result = subprocess.run(
        [str(HF_PYTHON), str(WORKER), *args], capture_output=True, text=True, timeout=600, cwd=REPO
    )
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("hf")
    _hf("write", str(out))
    return out


def _inputs(reference) -> dict[str, np.ndarray]:
    return {k: reference[f"input/{k}"].astype("int32") for k in ("token_ids", "segment_ids", "padding_mask")}


def _our_outputs(model: keras.Model, reference) -> dict[str, np.ndarray]:
    """Our model's outputs under the names HF gives them, on the worker's inputs."""
    x = _inputs(reference)
    if isinstance(model, AlbertBackbone):
        out = model(x)
        return {"last_hidden_state": out["sequence_output"], "pooler_output": out["pooled_output"]}
    if isinstance(model, AlbertPretrainer):
        positions = reference["input/mask_positions"].astype("int32")
        out = model({**x, "mask_positions": positions})
        # HF scores every position; compare at the masked ones.
        hf_logits = np.take_along_axis(
            reference["AlbertForPreTraining/prediction_logits"], positions[..., None], 1
        )
        return {"prediction_logits": (out["mlm_logits"], hf_logits), "sop_logits": out["sop_logits"]}
    name = type(model).__name__
    if name == "AlbertMultipleChoice":
        rows = reference["choice_rows"]
        return {"logits": model({k: v[rows] for k, v in x.items()})}
    if name == "AlbertQuestionAnswering":
        out = model(x)
        valid = x["padding_mask"].astype(bool)  # padding is masked out here, not in HF
        return {k: (np.asarray(out[k])[valid], None) for k in ("start_logits", "end_logits")}
    return {"logits": model(x)}


def _assert_matches_hf(model, reference, architecture, outputs=None):
    for name, ours in _our_outputs(model, reference).items():
        theirs = reference[f"{architecture}/{name}"] if outputs is None else outputs[f"output/{name}"]
        if isinstance(ours, tuple):
            ours, gathered = ours
            if name == "prediction_logits":
                theirs = (
                    gathered
                    if outputs is None
                    else np.take_along_axis(theirs, reference["input/mask_positions"][..., None], 1)
                )
            else:
                theirs = theirs[_inputs(reference)["padding_mask"].astype(bool)]
        diff = max_abs_diff(ours, theirs)
        print(f"{architecture} {name}: max |diff| {diff:.2e}")
        assert diff <= TOLERANCE, f"{architecture} {name}: {diff}"


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_hf_safetensors_import_matches_transformers(hf_dir, architecture):
    reference = np.load(hf_dir / "reference.npz")
    model = load_hf_model(str(hf_dir / architecture))
    assert (
        type(model).__name__
        == {
            "AlbertModel": "AlbertBackbone",
            "AlbertForPreTraining": "AlbertPretrainer",
            "AlbertForSequenceClassification": "AlbertClassifier",
            "AlbertForTokenClassification": "AlbertTokenClassifier",
            "AlbertForQuestionAnswering": "AlbertQuestionAnswering",
            "AlbertForMultipleChoice": "AlbertMultipleChoice",
        }[architecture]
    )
    _assert_matches_hf(model, reference, architecture)


def test_torch_bin_import_matches_safetensors_and_transformers(hf_dir):
    reference = np.load(hf_dir / "reference.npz")
    binary = read_hf_state(str(hf_dir / "AlbertForPreTraining-bin"))
    safetensors = read_hf_state(str(hf_dir / "AlbertForPreTraining"))
    for name, value in safetensors.items():
        np.testing.assert_array_equal(binary[name], value, err_msg=name)
    model = load_hf_model(str(hf_dir / "AlbertForPreTraining-bin"))
    _assert_matches_hf(model, reference, "AlbertForPreTraining")


def test_backbone_loads_from_any_task_checkpoint(hf_dir):
    reference = np.load(hf_dir / "reference.npz")
    backbone = load_hf_model(str(hf_dir / "AlbertForPreTraining"), task="backbone")
    assert isinstance(backbone, AlbertBackbone)
    pretrainer = load_hf_model(str(hf_dir / "AlbertForPreTraining"))
    out, expected = backbone(_inputs(reference)), pretrainer.backbone(_inputs(reference))
    np.testing.assert_array_equal(out["sequence_output"], expected["sequence_output"])


@pytest.mark.parametrize(
    "architecture", ["AlbertForPreTraining", "AlbertForSequenceClassification", "AlbertForMultipleChoice"]
)
def test_hf_round_trip_is_bit_identical_and_loads_in_transformers(hf_dir, tmp_path, architecture):
    reference = np.load(hf_dir / "reference.npz")
    model = load_hf_model(str(hf_dir / architecture))
    names = label_names(str(hf_dir / architecture))
    save_hf_model(model, str(tmp_path / "export"), label_names=names)
    original, exported = read_hf_state(str(hf_dir / architecture)), read_hf_state(str(tmp_path / "export"))
    assert sorted(exported) == sorted(original)
    for name, value in original.items():
        assert exported[name].dtype == value.dtype
        np.testing.assert_array_equal(exported[name], value, err_msg=name)

    _hf("read", str(tmp_path / "export"), str(hf_dir / "reference.npz"), str(tmp_path / "hf.npz"))
    loaded = np.load(tmp_path / "hf.npz")
    info = json.loads(str(loaded["loading_info"]))
    assert info["missing_keys"] == [] and info["unexpected_keys"] == [] and info["mismatched_keys"] == []
    _assert_matches_hf(model, reference, architecture, outputs=loaded)


def test_fine_tuned_classifier_exports_with_its_labels(tmp_path):
    from albert_keras import AlbertClassifier

    backbone = AlbertBackbone(AlbertConfig.preset("tiny"))
    classifier = AlbertClassifier(backbone, num_labels=3, problem_type="multi_label", dropout=0.2)
    randomize_weights(classifier, seed=3)
    save_hf_model(classifier, str(tmp_path), label_names=["cardiology", "neurology", "surgery"])
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == ["AlbertForSequenceClassification"]
    assert config["problem_type"] == "multi_label_classification"
    assert config["id2label"] == {"0": "cardiology", "1": "neurology", "2": "surgery"}
    assert config["classifier_dropout_prob"] == 0.2
    again = load_hf_model(str(tmp_path))
    assert again.task_config == classifier.task_config
    x = backbone_inputs(128, [9, 4], 9)
    np.testing.assert_array_equal(again(x), classifier(x))
    with pytest.raises(ValueError, match="2 names for num_labels=3"):
        save_hf_model(classifier, str(tmp_path / "bad"), label_names=["a", "b"])


def test_hf_import_names_every_missing_unknown_or_misshapen_tensor(hf_dir, tmp_path):
    from safetensors.numpy import save_file

    source = hf_dir / "AlbertForSequenceClassification"
    state = read_hf_state(str(source))

    def broken(change) -> str:
        folder = tmp_path / f"case{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        (folder / "config.json").write_text((source / "config.json").read_text())
        save_file(change(dict(state)), str(folder / "model.safetensors"))
        return str(folder)

    def drop(s):
        del s["classifier.bias"]
        return s

    with pytest.raises(ValueError, match=r"missing.*logits/bias"):
        load_hf_model(broken(drop))
    with pytest.raises(ValueError, match=r"albert\.encoder\.extra\.weight"):
        load_hf_model(broken(lambda s: {**s, "albert.encoder.extra.weight": np.zeros(2, "float32")}))
    with pytest.raises(ValueError, match=r"pooler/kernel: HF state dict has \(24, 23\)"):
        load_hf_model(broken(lambda s: {**s, "albert.pooler.weight": np.zeros((23, 24), "float32")}))
    with pytest.raises(ValueError, match=r"predictions\.decoder\.weight is not equal"):
        pretraining = read_hf_state(str(hf_dir / "AlbertForPreTraining"))
        from albert_keras.convert.hf import load_hf_weights

        untied = {**pretraining, "predictions.decoder.weight": np.zeros((90, 12), "float32")}
        load_hf_weights(load_hf_model(str(hf_dir / "AlbertForPreTraining")), untied)


def test_torch_reader_refuses_code_in_the_pickle(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo owned > " + str(tmp_path / "owned"),))

    path = tmp_path / "pytorch_model.bin"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"x": Exploit()}, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to load (posix|os)\.system"):
        load_torch_state_dict(str(path))
    assert not (tmp_path / "owned").exists()
    (tmp_path / "legacy.bin").write_bytes(pickle.dumps({}))
    with pytest.raises(ValueError, match=r"legacy pre-1\.6 format"):
        load_torch_state_dict(str(tmp_path / "legacy.bin"))


# -- google-research TF1 -------------------------------------------------------------------------

# HF name -> google-research name; written out here independently of albert_keras.convert.google.
_GOOGLE = {
    "albert.embeddings.word_embeddings.weight": "bert/embeddings/word_embeddings",
    "albert.embeddings.position_embeddings.weight": "bert/embeddings/position_embeddings",
    "albert.embeddings.token_type_embeddings.weight": "bert/embeddings/token_type_embeddings",
    "albert.embeddings.LayerNorm.weight": "bert/embeddings/LayerNorm/gamma",
    "albert.embeddings.LayerNorm.bias": "bert/embeddings/LayerNorm/beta",
    "albert.encoder.embedding_hidden_mapping_in.weight": "bert/encoder/embedding_hidden_mapping_in/kernel",
    "albert.encoder.embedding_hidden_mapping_in.bias": "bert/encoder/embedding_hidden_mapping_in/bias",
    "albert.pooler.weight": "bert/pooler/dense/kernel",
    "albert.pooler.bias": "bert/pooler/dense/bias",
    "predictions.dense.weight": "cls/predictions/transform/dense/kernel",
    "predictions.dense.bias": "cls/predictions/transform/dense/bias",
    "predictions.LayerNorm.weight": "cls/predictions/transform/LayerNorm/gamma",
    "predictions.LayerNorm.bias": "cls/predictions/transform/LayerNorm/beta",
    "predictions.bias": "cls/predictions/output_bias",
    "sop_classifier.classifier.weight": "cls/seq_relationship/output_weights",
    "sop_classifier.classifier.bias": "cls/seq_relationship/output_bias",
}
_GOOGLE_BLOCK = {
    "attention.query": "attention_1/self/query",
    "attention.key": "attention_1/self/key",
    "attention.value": "attention_1/self/value",
    "attention.dense": "attention_1/output/dense",
    "attention.LayerNorm": "LayerNorm",
    "ffn": "ffn_1/intermediate/dense",
    "ffn_output": "ffn_1/intermediate/output/dense",
    "full_layer_layer_norm": "LayerNorm_1",
}


def _google_variables(hf_state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for name, value in hf_state.items():
        if name.startswith("albert.encoder.albert_layer_groups."):
            _, _, _, g, _, j, rest = name.split(".", 6)
            module, param = rest.rsplit(".", 1)
            layer_norm = "LayerNorm" in module or "layer_norm" in module
            google_param = {"weight": "gamma", "bias": "beta"} if layer_norm else {"weight": "kernel"}
            out[
                f"bert/encoder/transformer/group_{g}/inner_group_{j}/{_GOOGLE_BLOCK[module]}/"
                f"{google_param.get(param, 'bias')}"
            ] = value if layer_norm or param == "bias" else value.T
        elif name in _GOOGLE:
            google = _GOOGLE[name]
            linear = name.endswith(".weight") and "LayerNorm" not in name and "embeddings" not in name
            # TF1 Dense kernels are (in, out); the SOP output_weights are kept (2, hidden) as in HF.
            out[google] = value.T if linear and "seq_relationship" not in google else value
    return out


def _write_tf1_checkpoint(prefix: str, variables: dict[str, np.ndarray]) -> None:
    import tensorflow as tf

    names = sorted(variables)
    tf.raw_ops.SaveV2(
        prefix=prefix,
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=[tf.constant(variables[n]) for n in names],
    )


@pytest.fixture(scope="module")
def google_dir(hf_dir, tmp_path_factory) -> pathlib.Path:
    folder = tmp_path_factory.mktemp("google")
    hf_config = json.loads((hf_dir / "AlbertForPreTraining" / "config.json").read_text())
    google_config = {k: hf_config[k] for k in AlbertConfig.__dataclass_fields__ if k in hf_config}
    google_config.update(hidden_act="gelu", net_structure_type=0, gap_size=0, down_scale_factor=1)
    (folder / "albert_config.json").write_text(json.dumps(google_config))
    variables = _google_variables(read_hf_state(str(hf_dir / "AlbertForPreTraining")))
    # Training state that a real run leaves in the checkpoint, and an older checkpoint beside it.
    state = {"global_step": np.array(200, "int64")}
    state.update({f"{n}/adam_m": np.zeros_like(v) for n, v in variables.items()})
    state.update({f"{n}/adam_v": np.zeros_like(v) for n, v in variables.items()})
    _write_tf1_checkpoint(str(folder / "model.ckpt-100"), {k: np.zeros_like(v) for k, v in variables.items()})
    _write_tf1_checkpoint(str(folder / "model.ckpt-200"), {**variables, **state})
    return folder


def test_google_tf1_checkpoint_matches_transformers(hf_dir, google_dir):
    reference = np.load(hf_dir / "reference.npz")
    pretrainer = load_google_model(str(google_dir))  # newest checkpoint, heads present
    assert isinstance(pretrainer, AlbertPretrainer)
    _assert_matches_hf(pretrainer, reference, "AlbertForPreTraining")
    backbone = load_google_model(str(google_dir / "model.ckpt-200"), task="backbone")
    hf_backbone = {"last_hidden_state", "pooler_output"}
    outputs = _our_outputs(backbone, reference)
    assert set(outputs) == hf_backbone
    np.testing.assert_array_equal(
        outputs["pooler_output"], pretrainer.backbone(_inputs(reference))["pooled_output"]
    )


def test_google_tf1_import_names_missing_and_unknown_variables(hf_dir, google_dir, tmp_path):
    import shutil

    variables = _google_variables(read_hf_state(str(hf_dir / "AlbertForPreTraining")))
    shutil.copy(google_dir / "albert_config.json", tmp_path / "albert_config.json")
    missing = dict(variables)
    del missing["bert/encoder/transformer/group_1/inner_group_0/LayerNorm_1/beta"]
    _write_tf1_checkpoint(str(tmp_path / "model.ckpt-1"), missing)
    with pytest.raises(ValueError, match=r"missing.*group_1_inner_0_ffn/layer_norm/beta"):
        load_google_model(str(tmp_path / "model.ckpt-1"))
    _write_tf1_checkpoint(
        str(tmp_path / "model.ckpt-2"), {**variables, "bert/encoder/extra/kernel": np.zeros(3)}
    )
    with pytest.raises(ValueError, match=r"bert/encoder/extra/kernel"):
        load_google_model(str(tmp_path / "model.ckpt-2"))


# -- keras-hub ---------------------------------------------------------------------------------


def test_keras_hub_preset_folder_imports(tmp_path):
    keras_hub = pytest.importorskip("keras_hub")
    from albert_keras.convert.keras_hub import load_keras_hub_preset

    theirs = keras_hub.models.AlbertBackbone(
        vocabulary_size=70, num_layers=4, num_heads=2, num_groups=2, num_inner_repetitions=2,
        embedding_dim=8, hidden_dim=16, intermediate_dim=24, max_sequence_length=24,
    )  # fmt: skip
    randomize_weights(theirs, seed=5)
    theirs.save_to_preset(str(tmp_path / "preset"))
    ours = load_keras_hub_preset(str(tmp_path / "preset"))
    assert ours.config.inner_group_num == 2 and ours.config.num_hidden_groups == 2
    x = backbone_inputs(70, [12, 5], 12, seed=1)
    diff = max_abs_diff(theirs(x)["sequence_output"], ours(x)["sequence_output"])
    print(f"keras-hub preset: max |diff| sequence {diff:.2e}")
    assert diff <= TOLERANCE
