"""A minimal safetensors writer for the project's Python scripts (fixtures, weight export, stepped
weights), so they need no PyPI package: tensors sorted by name, header padded to 8 bytes, written to
a temporary file and renamed. The format: 8-byte little-endian header length, JSON header, raw
little-endian data. write_raw needs only the standard library; write takes torch tensors."""
import json
import os
import struct

DTYPES = {"torch.float32": "F32", "torch.float64": "F64", "torch.int64": "I64", "torch.int8": "I8", "torch.bool": "BOOL"}


def write_raw(path, entries, metadata):
    """entries: name -> (safetensors dtype string, shape, raw little-endian bytes)."""
    header, blobs, offset = {}, [], 0
    for name in sorted(entries):
        dtype, shape, data = entries[name]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    os.replace(path + ".tmp", path)


def dtype_name(tensor):
    """The safetensors dtype of a torch tensor, or None where the format has none we use."""
    return DTYPES.get(str(tensor.dtype))


def write(path, tensors, metadata):
    entries = {}
    for name, tensor in tensors.items():
        t = tensor.detach().contiguous()
        if dtype_name(t) is None:
            raise ValueError(f"{name}: unsupported dtype {t.dtype}")
        entries[name] = (dtype_name(t), t.shape, t.numpy().tobytes())
    write_raw(path, entries, metadata)
