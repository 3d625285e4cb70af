"""TensorFlow checkpoints and SavedModels read without TensorFlow: the paper's released experts are SavedModels.

A SavedModel directory holds ``saved_model.pb`` (a ``SavedModel`` proto whose meta graph carries a
``SavedObjectGraph``: one node per tracked object, variables with their names) and a checkpoint
``variables/variables.index`` + ``variables.data-*-of-*``. The index is a LevelDB-style sorted-string table
(blocks of prefix-compressed keys, a footer with two block handles and a magic number); the empty key holds
the bundle header and every other key a ``BundleEntryProto`` locating one tensor's little-endian bytes in a
data shard. The checkpoint's ``_CHECKPOINTABLE_OBJECT_GRAPH`` tensor (a ``TrackableObjectGraph`` proto, node
for node the same objects as the ``SavedObjectGraph``) gives each variable's checkpoint key.

Protos are decoded from the wire format with the field numbers of TensorFlow's ``tensor_bundle.proto``,
``saved_model.proto``, ``meta_graph.proto``, ``saved_object_graph.proto`` and
``trackable_object_graph.proto``; no protobuf package is needed.
"""

from __future__ import annotations

import os
import struct
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

TABLE_MAGIC = 0xDB4775248B80FB57
OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
# TensorFlow DataType enum -> numpy dtype (types.proto); bfloat16 is widened by hand
DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8, 9: np.int64, 10: np.bool_,
          17: np.uint16, 19: np.float16, 22: np.uint32, 23: np.uint64}  # fmt: skip
DT_STRING, DT_BFLOAT16 = 7, 14


class TFCheckpointError(ValueError):
    """A TensorFlow checkpoint or SavedModel that cannot be read; the message names the file and the problem."""


class CorruptTensorError(TFCheckpointError):
    """Tensors whose bytes do not match the CRC32C their checkpoint records (``tensors``: their names)."""

    def __init__(self, where: str | os.PathLike, tensors: list[str]) -> None:
        self.where, self.tensors = str(where), list(tensors)
        shown = ", ".join(self.tensors[:5]) + (
            f" and {len(self.tensors) - 5} more" if len(self.tensors) > 5 else ""
        )
        super().__init__(
            f"{where}: {len(self.tensors)} tensor(s) fail their CRC32C check ({shown}): the download is corrupt "
            "or incomplete; download it again"
        )


# -- protobuf wire format ------------------------------------------------------------------------------------------
def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise TFCheckpointError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of a serialised proto message: ints for varint and fixed fields, bytes otherwise."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + n], pos + n
        elif wire == 5:
            value, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        else:
            raise TFCheckpointError(f"unsupported protobuf wire type {wire} (field {number})")
        yield number, value


def _first(buf: bytes, number: int, default=None):
    return next((v for n, v in fields(buf) if n == number), default)


def _all(buf: bytes, number: int) -> list:
    return [v for n, v in fields(buf) if n == number]


# -- the sorted-string table of variables.index -----------------------------------------------------------------
def _block_entries(block: bytes) -> Iterator[tuple[bytes, bytes]]:
    num_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end = len(block) - 4 - 4 * num_restarts
    pos, key = 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        vlen, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        yield key, block[pos : pos + vlen]
        pos += vlen


def _block(data: bytes, handle: bytes, path: Path) -> bytes:
    offset, pos = _varint(handle, 0)
    size, _ = _varint(handle, pos)
    if offset + size + 5 > len(data):
        raise TFCheckpointError(f"{path}: a block lies beyond the end of the file; is the file complete?")
    if data[offset + size] != 0:
        raise TFCheckpointError(
            f"{path}: compressed table blocks (type {data[offset + size]}) are not supported"
        )
    return data[offset : offset + size]


def read_table(path: str | os.PathLike) -> dict[bytes, bytes]:
    """Every key -> value of a LevelDB-format table (TensorFlow's checkpoint ``.index`` files)."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) < 48 or struct.unpack_from("<Q", data, len(data) - 8)[0] != TABLE_MAGIC:
        raise TFCheckpointError(
            f"{path} is not a TensorFlow checkpoint index (no table magic number at its end)"
        )
    footer = data[-48:]
    _, pos = _varint(footer, 0)  # metaindex handle: offset
    _, pos = _varint(footer, pos)  # metaindex handle: size
    index = _block(data, footer[pos:], path)
    out: dict[bytes, bytes] = {}
    for _, handle in _block_entries(index):
        out.update(_block_entries(_block(data, handle, path)))
    return out


# -- tensors ----------------------------------------------------------------------------------------------------
def masked_crc32c(data: bytes, crc: int = 0) -> int:
    """TensorFlow's masked CRC32C (``crc32c::Mask``): what a ``BundleEntryProto`` stores for its tensor's bytes."""
    import crc32c  # a small C extension (also tfrecord's dependency)

    c = crc32c.crc32c(data, crc)
    return ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def _crc_of_string_tensor(raw: bytes, count: int) -> int:
    """The masked CRC32C TensorFlow's bundle writer records for a string tensor: over each element's length
    as a little-endian uint32, the masked checksum of those lengths, then the strings' bytes."""
    import crc32c

    lengths, pos = [], 0
    for _ in range(count):
        n, pos = _varint(raw, pos)
        lengths.append(n)
    crc = crc32c.crc32c(struct.pack(f"<{count}I", *lengths))
    return masked_crc32c(raw[pos + 4 :], crc32c.crc32c(raw[pos : pos + 4], crc))


def _string_tensor(raw: bytes, count: int) -> list[bytes]:
    lengths, pos = [], 0
    for _ in range(count):
        n, pos = _varint(raw, pos)
        lengths.append(n)
    pos += 4  # crc32c of the lengths
    out = []
    for n in lengths:
        out.append(raw[pos : pos + n])
        pos += n
    return out


def read_checkpoint(prefix: str | os.PathLike, verify: bool = True) -> dict[str, np.ndarray | list[bytes]]:
    """Every tensor of a TF checkpoint (``prefix.index`` + ``prefix.data-*``) by key; string tensors as bytes.
    ``verify``: check every tensor against the CRC32C its entry records, as TensorFlow does (a corrupt download
    raises :class:`CorruptTensorError` naming the tensor)."""
    prefix = str(prefix)
    index = Path(prefix + ".index")
    if not index.is_file():
        raise TFCheckpointError(f"checkpoint index {index} not found")
    table = read_table(index)
    header = table.get(b"", b"")
    num_shards = int(_first(header, 1, 1))
    if int(_first(header, 2, 0)) != 0:
        raise TFCheckpointError(f"{index}: big-endian checkpoints are not supported")
    shards: dict[int, bytes] = {}
    out: dict[str, np.ndarray | list[bytes]] = {}
    corrupt: list[str] = []
    for key, entry in table.items():
        if key == b"":
            continue
        dtype = int(_first(entry, 1, 0))
        shape = [int(_first(d, 1, 0)) for d in _all(_first(entry, 2, b""), 2)]
        shard, offset, size = int(_first(entry, 3, 0)), int(_first(entry, 4, 0)), int(_first(entry, 5, 0))
        if _all(entry, 7):
            raise TFCheckpointError(
                f"{index}: tensor {key.decode()} is stored in slices, which are not supported"
            )
        if shard not in shards:
            data_file = Path(f"{prefix}.data-{shard:05d}-of-{num_shards:05d}")
            if not data_file.is_file():
                raise TFCheckpointError(f"checkpoint data shard {data_file} not found")
            shards[shard] = data_file.read_bytes()
        raw = shards[shard][offset : offset + size]
        if len(raw) != size:
            raise TFCheckpointError(f"{prefix}: tensor {key.decode()} lies beyond the end of its data shard")
        count = int(np.prod(shape)) if shape else 1
        stored = _first(entry, 6)
        if verify and stored is not None:
            got = _crc_of_string_tensor(raw, count) if dtype == DT_STRING else masked_crc32c(raw)
            if got != stored:
                corrupt.append(key.decode())
        if dtype == DT_STRING:
            out[key.decode()] = _string_tensor(raw, count)
        elif dtype == DT_BFLOAT16:
            bits = np.frombuffer(raw, "<u2").astype(np.uint32) << 16
            out[key.decode()] = bits.view(np.float32).reshape(shape)
        elif dtype in DTYPES:
            out[key.decode()] = (
                np.frombuffer(raw, np.dtype(DTYPES[dtype]).newbyteorder("<")).reshape(shape).copy()
            )
        else:
            raise TFCheckpointError(
                f"{prefix}: tensor {key.decode()} has unsupported TensorFlow dtype {dtype}"
            )
    if corrupt:
        raise CorruptTensorError(prefix, corrupt)
    return out


# -- SavedModels --------------------------------------------------------------------------------------------------
def _saved_variable_names(pb: bytes) -> dict[int, str]:
    """node id -> variable name, from the SavedObjectGraph of the first meta graph."""
    meta = _first(pb, 2)  # SavedModel.meta_graphs
    graph = _first(meta, 7) if meta is not None else None  # MetaGraphDef.object_graph_def
    if graph is None:
        raise TFCheckpointError(
            "saved_model.pb has no object graph (a TF1 hub module?); only TF2 SavedModels are read"
        )
    names = {}
    for i, node in enumerate(_all(graph, 1)):  # SavedObjectGraph.nodes
        var = _first(node, 7)  # SavedObject.variable
        if var is not None:
            names[i] = bytes(_first(var, 6, b"")).decode()  # SavedVariable.name
    return names


def _checkpoint_keys(object_graph: bytes) -> dict[int, tuple[str, str]]:
    """node id -> (checkpoint key, full name) of each node's VARIABLE_VALUE attribute."""
    keys = {}
    for i, node in enumerate(_all(object_graph, 1)):  # TrackableObjectGraph.nodes
        for attr in _all(node, 2):  # TrackableObject.attributes
            if bytes(_first(attr, 1, b"")) == b"VARIABLE_VALUE":
                keys[i] = (bytes(_first(attr, 3, b"")).decode(), bytes(_first(attr, 2, b"")).decode())
    return keys


def read_saved_model(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The variables of a TF2 SavedModel (a directory, or a ``.tar.gz`` / ``.tgz`` / ``.tar`` archive of one)
    by the names the file records (``SavedVariable.name``, else the checkpoint's full name), ``:0`` removed."""
    path = Path(path)
    if path.is_file() and tarfile.is_tarfile(path):
        with tempfile.TemporaryDirectory() as tmp, tarfile.open(path) as tar:
            try:
                tar.extractall(tmp, filter="data")  # refuses absolute paths, '..', links out and device files
            except (tarfile.TarError, OSError) as e:
                raise TFCheckpointError(
                    f"archive {path} cannot be unpacked safely ({type(e).__name__}: {e}); a TF Hub SavedModel archive "
                    "holds only saved_model.pb and variables/: download it again"
                ) from e
            found = [p.parent for p in Path(tmp).rglob("saved_model.pb")]
            if len(found) != 1:
                raise TFCheckpointError(
                    f"archive {path} holds {len(found)} saved_model.pb files, expected one"
                )
            return read_saved_model(found[0])
    pb_file = path / "saved_model.pb"
    if not pb_file.is_file():
        raise TFCheckpointError(
            f"{path} is not a SavedModel: {pb_file} not found. Pass the folder that holds saved_model.pb and "
            "variables/ (or the downloaded .tar.gz archive)"
        )
    try:
        tensors = read_checkpoint(path / "variables" / "variables")
    except CorruptTensorError as e:  # name the variables, not their checkpoint keys
        tensors = read_checkpoint(path / "variables" / "variables", verify=False)
        by_key = {}
        if OBJECT_GRAPH_KEY in tensors and OBJECT_GRAPH_KEY not in e.tensors:
            names = _saved_variable_names((path / "saved_model.pb").read_bytes())
            by_key = {key: (names.get(node) or full or key).removesuffix(":0")
                      for node, (key, full) in _checkpoint_keys(tensors[OBJECT_GRAPH_KEY][0]).items()}  # fmt: skip
        raise CorruptTensorError(path, [by_key.get(k, k) for k in e.tensors]) from None
    graph = tensors.get(OBJECT_GRAPH_KEY)
    if graph is None:
        raise TFCheckpointError(f"{path}: the checkpoint has no {OBJECT_GRAPH_KEY} (not written by TF2)")
    names = _saved_variable_names(pb_file.read_bytes())
    out = {}
    for node, (key, full_name) in _checkpoint_keys(graph[0]).items():
        name = (names.get(node) or full_name or key).removesuffix(":0")
        if key not in tensors:
            raise TFCheckpointError(
                f"{path}: variable {name} points to checkpoint key {key}, which is missing"
            )
        if name in out:
            raise TFCheckpointError(f"{path}: two variables are named {name}")
        out[name] = tensors[key]
    return out
