"""Reads a PyTorch `pytorch_model.bin` state dict into numpy arrays, without torch and without
running arbitrary pickled code.

A torch checkpoint (torch >= 1.6, the zip format) is a pickle (`<name>/data.pkl`) whose tensors point
at raw storages stored beside it (`<name>/data/<key>`). Unpickling it with `pickle.load` would
execute whatever callables the file names, so the unpickler here resolves only the handful of
globals a state dict needs (an OrderedDict, the tensor-rebuild helpers, the storage types) and
rejects every other one by name. The legacy (pre-1.6, non-zip) format is not read.
"""

from __future__ import annotations

import collections
import pickle
import zipfile
from typing import Any

import numpy as np

# torch storage class name -> numpy dtype of its elements. BFloat16 has no numpy dtype: its raw
# 16-bit words are widened to float32 (exact).
_STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16",
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, name: str):
        self.name = name


def _rebuild_tensor(storage, storage_offset, size, stride, *unused) -> np.ndarray:
    """(storage, offset, size, stride) -> an array, as torch._utils._rebuild_tensor_v2 does."""
    size, stride = tuple(size), tuple(stride)
    if not size:
        return storage[storage_offset].copy()
    itemsize = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[storage_offset:], shape=size, strides=tuple(s * itemsize for s in stride), writeable=False
    )
    return np.ascontiguousarray(view)


def _rebuild_parameter(data, requires_grad, backward_hooks, *unused) -> np.ndarray:
    return data


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _StateDictUnpickler(pickle.Unpickler):
    def __init__(self, file, archive: zipfile.ZipFile, prefix: str, source: str):
        super().__init__(file)
        self._archive = archive
        self._prefix = prefix
        self._source = source
        self._storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(
            f"{self._source}: refusing to load {module}.{name}; a state dict holds only tensors "
            "(this reader resolves no other callables)"
        )

    def persistent_load(self, pid) -> np.ndarray:
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"{self._source}: unsupported persistent id {pid[:1]!r}")
        _, storage_type, key, _location, _numel = pid
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"{self._source}: unsupported storage type {storage_type!r}")
        if key not in self._storages:
            raw = self._archive.read(f"{self._prefix}/data/{key}")
            dtype = _STORAGE_DTYPES[storage_type.name]
            if dtype == "bfloat16":
                words = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
                self._storages[key] = words.view(np.float32)
            else:
                self._storages[key] = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"))
        return self._storages[key]


def load_torch_state_dict(path: str) -> dict[str, np.ndarray]:
    """The tensors of a torch zip checkpoint, by name, as numpy arrays (little-endian files only)."""
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path}: not a zip-format torch checkpoint (the legacy pre-1.6 format is not supported; "
            "re-save it with a current torch, or convert it to safetensors)"
        )
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise ValueError(f"{path}: expected one data.pkl in the archive, found {len(pickles)}")
        prefix = pickles[0][: -len("/data.pkl")]
        byteorder = f"{prefix}/byteorder"
        if byteorder in archive.namelist() and archive.read(byteorder).strip() != b"little":
            raise ValueError(f"{path}: big-endian torch checkpoints are not supported")
        with archive.open(pickles[0]) as f:
            state = _StateDictUnpickler(f, archive, prefix, path).load()
    if not isinstance(state, dict):
        raise ValueError(f"{path}: holds a {type(state).__name__}, not a state dict")
    bad = sorted(k for k, v in state.items() if not isinstance(v, np.ndarray))
    if bad:
        raise ValueError(f"{path}: entries that are not tensors: {bad}")
    return dict(state)
