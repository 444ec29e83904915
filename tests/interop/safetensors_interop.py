#!/usr/bin/env python3
"""Checks that Python's `safetensors` and ours read each other's files, both directions.

usage: safetensors_interop.py SAFETENSORS_TOOL WORKDIR
Exits 77 (ctest: skipped) when the `safetensors` or `numpy` packages are missing; CI installs them
(pip install safetensors numpy).
"""
import json
import os
import subprocess
import sys

try:
    import numpy as np
    from safetensors import safe_open, serialize_file
    from safetensors.numpy import load_file, save_file
except ImportError as error:  # pragma: no cover
    print(f"SKIPPED: {error}; pip install safetensors numpy")
    sys.exit(77)

tool, workdir = sys.argv[1], sys.argv[2]
os.makedirs(workdir, exist_ok=True)
failures = []


def expect(condition, message):
    if not condition:
        failures.append(message)
        print("FAIL:", message)


def ramp(n):
    return np.arange(n, dtype=np.float64) * 0.25 - 3


# Python -> C++ ---------------------------------------------------------------------------------
py_file = os.path.join(workdir, "from_python.safetensors")
tensors = {
    "f32": ramp(6).astype(np.float32).reshape(2, 3),
    "f64": ramp(4),
    "f16": ramp(5).astype(np.float16),
    "i64": np.array([[-5, 0], [7, 1 << 40]], dtype=np.int64),
    "u8": np.array([1, 0, 1], dtype=np.uint8),
    "flags": np.array([True, False], dtype=np.bool_),
    "empty": np.zeros((0, 3), dtype=np.float32),
}
save_file(tensors, py_file, metadata={"writer": "python", "note": "d\u00e9j\u00e0 vu"})
# numpy has no bfloat16: write it through the raw serializer (bfloat16 bits of ramp(3)).
bf16_bits = (ramp(3).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
bf16_file = os.path.join(workdir, "from_python_bf16.safetensors")
try:  # safetensors >= 0.8 takes TensorSpec objects, older versions plain dicts
    from safetensors._safetensors_rust import TensorSpec
    bf16_spec = TensorSpec(dtype="bfloat16", shape=[3], data_ptr=bf16_bits.ctypes.data, data_len=bf16_bits.nbytes)
except ImportError:
    bf16_spec = {"dtype": "bfloat16", "shape": [3], "data": bf16_bits.tobytes()}
serialize_file({"bf16": bf16_spec}, bf16_file)

for path, expected in [(py_file, tensors), (bf16_file, {"bf16": ramp(3)})]:
    dump = subprocess.run([tool, "dump", path], capture_output=True, text=True)
    expect(dump.returncode == 0, f"dump {path}: {dump.stderr}")
    if dump.returncode != 0:
        continue
    ours = json.loads(dump.stdout)
    for name, value in expected.items():
        expect(name in ours, f"{name} missing in our reading of {path}")
        if name not in ours:
            continue
        expect(list(ours[name]["shape"]) == list(value.shape), f"{name}: shape {ours[name]['shape']} vs {value.shape}")
        expect(np.array_equal(np.array(ours[name]["values"], dtype=np.float64), value.astype(np.float64).ravel()),
               f"{name}: values differ")
    if path == py_file:
        expect(ours["__metadata__"] == {"writer": "python", "note": "d\u00e9j\u00e0 vu"}, "metadata differs")

# C++ -> Python ---------------------------------------------------------------------------------
cpp_file = os.path.join(workdir, "from_cpp.safetensors")
written = subprocess.run([tool, "write", cpp_file], capture_output=True, text=True)
expect(written.returncode == 0, f"write: {written.stderr}")
if written.returncode == 0:
    loaded = load_file(cpp_file)
    expect(np.array_equal(loaded["f32"], ramp(6).astype(np.float32).reshape(2, 3)), "f32 differs")
    expect(loaded["f32"].dtype == np.float32, "f32 dtype")
    expect(np.array_equal(loaded["f64"], ramp(4)), "f64 differs")
    expect(np.array_equal(loaded["i64"], np.array([[-5, 0], [7, 1 << 40]])), "i64 differs")
    expect(loaded["mask"].dtype == np.bool_ and list(loaded["mask"]) == [True, False, True], "bool differs")
    expect(loaded["scalar"].shape == () and float(loaded["scalar"]) == -3.0, "scalar differs")
    expect(loaded["empty"].shape == (0, 3), "empty shape differs")
    with safe_open(cpp_file, framework="numpy") as handle:
        expect(handle.metadata() == {"writer": "mrcnn", "note": "d\u00e9j\u00e0 vu"}, "metadata differs")
    f16 = load_file(cpp_file + ".f16")["f16"]
    expect(f16.dtype == np.float16 and np.array_equal(f16.astype(np.float64), ramp(5)), "f16 differs")
    with safe_open(cpp_file + ".bf16", framework="numpy") as handle:
        expect(handle.get_slice("f16").get_dtype() == "BF16", "bf16 dtype not BF16")
    raw = open(cpp_file + ".bf16", "rb").read()
    header_len = int.from_bytes(raw[:8], "little")
    bits = np.frombuffer(raw[8 + header_len:], dtype=np.uint16).astype(np.uint32) << 16
    expect(np.array_equal(bits.view(np.float32).astype(np.float64), ramp(5)), "bf16 values differ")

if failures:
    print(f"{len(failures)} interop check(s) failed")
    sys.exit(1)
print("safetensors interop: Python -> C++ and C++ -> Python agree (F32, F64, F16, BF16, I64, U8, BOOL, metadata)")
