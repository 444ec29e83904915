// safetensors I/O. F16 and BF16 are widened to float32 on load; U8 and BOOL load as bool (U8 values
// other than 0/1 are rejected rather than silently changed); I32 is not part of this project's set.
#include "tensor/safetensors.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tensor/dispatch.h"

namespace mrcnn::safetensors {

namespace {

using nlohmann::json;

[[noreturn]] void fail(const std::string& name, const std::string& problem) {
  throw Error("safetensors: " + name + ": " + problem);
}

struct DiskType {
  const char* name;
  size_t size;
};

DiskType disk_type(const std::string& name, const std::string& file) {
  static const DiskType kTypes[] = {{"F32", 4}, {"F64", 8}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4}, {"I16", 2}, {"I8", 1},
                                     {"U8", 1}, {"BOOL", 1}};
  for (const DiskType& t : kTypes)
    if (name == t.name) return t;
  fail(file, "unsupported dtype '" + name + "' (supported: F32, F64, F16, BF16, I64, I32, I16, I8, U8, BOOL)");
}

uint64_t read_u64_le(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

uint16_t float_to_half(float value) {
  uint32_t f;
  std::memcpy(&f, &value, 4);
  const uint32_t sign = (f >> 16) & 0x8000u;
  const uint32_t exponent = (f >> 23) & 0xffu;
  uint32_t mantissa = f & 0x7fffffu;
  if (exponent == 0xff) return static_cast<uint16_t>(sign | 0x7c00u | (mantissa ? 0x200u : 0));  // inf/NaN
  int32_t e = static_cast<int32_t>(exponent) - 127 + 15;
  if (e >= 31) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow to infinity
  if (e <= 0) {
    // Subnormal half (or zero): shift the implicit-1 mantissa right, rounding to nearest even.
    if (e < -10) return static_cast<uint16_t>(sign);
    mantissa |= 0x800000u;
    const uint32_t shift = static_cast<uint32_t>(14 - e);
    uint32_t half_m = mantissa >> shift;
    const uint32_t rest = mantissa & ((1u << shift) - 1), halfway = 1u << (shift - 1);
    if (rest > halfway || (rest == halfway && (half_m & 1u))) ++half_m;
    return static_cast<uint16_t>(sign | half_m);
  }
  uint32_t half = sign | (static_cast<uint32_t>(e) << 10) | (mantissa >> 13);
  const uint32_t rest = mantissa & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;  // may carry into the exponent: correct
  return static_cast<uint16_t>(half);
}

float half_to_float(uint16_t bits) {
  const uint32_t sign = (bits & 0x8000u) << 16;
  uint32_t exponent = (bits >> 10) & 0x1fu;
  uint32_t mantissa = bits & 0x3ffu;
  uint32_t f;
  if (exponent == 0x1f) {
    f = sign | 0x7f800000u | (mantissa << 13);
  } else if (exponent == 0) {
    if (mantissa == 0) {
      f = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do {
        ++e;
        mantissa <<= 1;
      } while (!(mantissa & 0x400u));
      f = sign | (static_cast<uint32_t>(127 - 15 - e) << 23) | ((mantissa & 0x3ffu) << 13);
    }
  } else {
    f = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
  }
  float out;
  std::memcpy(&out, &f, 4);
  return out;
}

uint16_t float_to_bfloat16(float value) {
  uint32_t f;
  std::memcpy(&f, &value, 4);
  if ((f & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((f >> 16) | 0x40u);  // quiet NaN
  f += 0x7fffu + ((f >> 16) & 1u);
  return static_cast<uint16_t>(f >> 16);
}

float bfloat16_to_float(uint16_t bits) {
  const uint32_t f = static_cast<uint32_t>(bits) << 16;
  float out;
  std::memcpy(&out, &f, 4);
  return out;
}

File parse(const std::string& bytes, const std::string& name) {
  if (bytes.size() < 8) fail(name, str_cat("file is ", bytes.size(), " bytes, too short for the 8-byte header length"));
  const uint64_t header_len = read_u64_le(reinterpret_cast<const unsigned char*>(bytes.data()));
  if (header_len > kMaxHeaderBytes) fail(name, str_cat("header length ", header_len, " exceeds the ", kMaxHeaderBytes, " byte limit"));
  if (header_len > bytes.size() - 8)
    fail(name, str_cat("header length ", header_len, " runs past the end of the ", bytes.size(), "-byte file"));
  json header;
  try {
    header = json::parse(bytes.begin() + 8, bytes.begin() + 8 + static_cast<std::ptrdiff_t>(header_len));
  } catch (const json::exception& e) {
    fail(name, std::string("header is not valid UTF-8 JSON: ") + e.what());
  }
  if (!header.is_object()) fail(name, "header is not a JSON object");
  const uint64_t data_size = bytes.size() - 8 - header_len;
  const char* data = bytes.data() + 8 + header_len;

  File file;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  std::vector<std::string> names;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& key = it.key();
    const json& entry = it.value();
    if (key == "__metadata__") {
      if (!entry.is_object()) fail(name, "__metadata__ is not an object");
      for (auto m = entry.begin(); m != entry.end(); ++m) {
        if (!m.value().is_string()) fail(name, "__metadata__ value for '" + m.key() + "' is not a string");
        file.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + key + "'";
    if (!entry.is_object()) fail(name, where + " entry is not an object");
    if (!entry.contains("dtype") || !entry["dtype"].is_string()) fail(name, where + " has no string 'dtype'");
    if (!entry.contains("shape") || !entry["shape"].is_array()) fail(name, where + " has no 'shape' array");
    if (!entry.contains("data_offsets") || !entry["data_offsets"].is_array() || entry["data_offsets"].size() != 2)
      fail(name, where + " has no 'data_offsets' pair");
    const DiskType type = disk_type(entry["dtype"].get<std::string>(), name);
    Shape shape;
    for (const json& s : entry["shape"]) {
      if (!s.is_number_unsigned()) fail(name, where + " has a shape entry that is not a non-negative integer");
      if (s.get<uint64_t>() > (uint64_t(1) << 62)) fail(name, where + " has an absurd dimension");
      shape.push_back(static_cast<int64_t>(s.get<uint64_t>()));
    }
    int64_t numel = 0;
    try {
      numel = shape_numel(shape);
    } catch (const Error&) {
      fail(name, str_cat(where, " shape ", shape_str(shape), " overflows"));
    }
    const json& offsets = entry["data_offsets"];
    if (!offsets[0].is_number_unsigned() || !offsets[1].is_number_unsigned())
      fail(name, where + " data_offsets are not non-negative integers");
    const uint64_t begin = offsets[0].get<uint64_t>(), end = offsets[1].get<uint64_t>();
    if (begin > end) fail(name, str_cat(where, " data_offsets [", begin, ", ", end, "] are reversed"));
    if (end > data_size) fail(name, str_cat(where, " data_offsets [", begin, ", ", end, "] run past the ", data_size, "-byte data section"));
    if (static_cast<uint64_t>(numel) > (end - begin) / type.size || (end - begin) != static_cast<uint64_t>(numel) * type.size)
      fail(name, str_cat(where, " has ", end - begin, " bytes but shape ", shape_str(shape), " of ", type.name, " needs ",
                         static_cast<double>(numel) * static_cast<double>(type.size)));
    ranges.emplace_back(begin, end);
    names.push_back(key);

    const std::string dt = type.name;
    const char* src = data + begin;
    Tensor t;
    if (dt == "F32" || dt == "F16" || dt == "BF16") {
      t = empty(shape, kFloat32);
      float* out = t.data<float>();
      // The dtype is decided once per tensor, not per element: a string compare per float was a
      // tenth of `mrcnn predict`'s time on one image.
      if (dt == "F32") {
        if (numel) std::memcpy(out, src, static_cast<size_t>(numel) * 4);
      } else {
        const bool half = dt == "F16";
        for (int64_t i = 0; i < numel; ++i) {
          uint16_t bits;
          std::memcpy(&bits, src + 2 * i, 2);
          out[i] = half ? half_to_float(bits) : bfloat16_to_float(bits);
        }
      }
    } else if (dt == "F64" || dt == "I64") {
      t = empty(shape, dt == "F64" ? kFloat64 : kInt64);
      if (numel) std::memcpy(t.raw_data(), src, static_cast<size_t>(numel) * 8);
    } else if (dt == "I32" || dt == "I16" || dt == "I8") {
      // Narrow signed integers widen to int64 (exact); the parity fixture stores int8 weight codes.
      t = empty(shape, kInt64);
      int64_t* out = t.data<int64_t>();
      if (dt == "I8") {
        for (int64_t i = 0; i < numel; ++i) out[i] = static_cast<int8_t>(src[i]);
      } else if (dt == "I16") {
        for (int64_t i = 0; i < numel; ++i) {
          int16_t v;
          std::memcpy(&v, src + 2 * i, 2);
          out[i] = v;
        }
      } else {
        for (int64_t i = 0; i < numel; ++i) {
          int32_t v;
          std::memcpy(&v, src + 4 * i, 4);
          out[i] = v;
        }
      }
    } else {
      t = empty(shape, kBool);
      uint8_t* out = t.data<uint8_t>();
      for (int64_t i = 0; i < numel; ++i) {
        const uint8_t v = static_cast<uint8_t>(src[i]);
        if (v > 1) fail(name, str_cat(where, " of dtype ", dt, " holds ", int(v), "; only 0/1 (bool) are supported"));
        out[i] = v;
      }
    }
    file.tensors[key] = t;
  }
  // Two tensors must never share bytes.
  std::vector<size_t> order(ranges.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ranges[a] < ranges[b]; });
  uint64_t covered_to = 0;  // end of the furthest non-empty range seen so far
  size_t covered_by = 0;
  for (size_t i : order) {
    const auto& range = ranges[i];
    if (range.first == range.second) continue;
    if (range.first < covered_to)
      fail(name, "tensors '" + names[covered_by] + "' and '" + names[i] + "' overlap in the data section");
    if (range.second > covered_to) {
      covered_to = range.second;
      covered_by = i;
    }
  }
  return file;
}

File load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open file");
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size < 0) fail(path, "cannot read file size");
  in.seekg(0);
  std::string bytes(static_cast<size_t>(size), '\0');
  if (size > 0 && !in.read(bytes.data(), size)) fail(path, "read error");
  return parse(bytes, path);
}

std::string serialize(const File& file, FloatStorage storage) {
  json header = json::object();
  if (!file.metadata.empty()) header["__metadata__"] = file.metadata;
  std::string data;
  for (const auto& [key, tensor] : file.tensors) {
    check(key != "__metadata__", "safetensors: a tensor cannot be named __metadata__");
    const Tensor t = copy_as(tensor, tensor.dtype(), kCPU);
    const uint64_t begin = data.size();
    std::string dt;
    if (t.dtype() == kFloat64 && storage == FloatStorage::Native) {
      dt = "F64";
      data.append(static_cast<const char*>(t.raw_data()), static_cast<size_t>(t.numel()) * 8);
    } else if (is_floating(t.dtype())) {
      const std::vector<float> values = to_vector<float>(t);
      if (storage == FloatStorage::Native) {
        dt = "F32";
        data.append(reinterpret_cast<const char*>(values.data()), values.size() * 4);
      } else {
        dt = storage == FloatStorage::F16 ? "F16" : "BF16";
        for (float v : values) {
          const uint16_t bits = storage == FloatStorage::F16 ? float_to_half(v) : float_to_bfloat16(v);
          data.append(reinterpret_cast<const char*>(&bits), 2);
        }
      }
    } else if (t.dtype() == kInt64) {
      dt = "I64";
      data.append(static_cast<const char*>(t.raw_data()), static_cast<size_t>(t.numel()) * 8);
    } else {
      dt = "BOOL";
      data.append(static_cast<const char*>(t.raw_data()), static_cast<size_t>(t.numel()));
    }
    header[key] = {{"dtype", dt}, {"shape", t.sizes()}, {"data_offsets", {begin, static_cast<uint64_t>(data.size())}}};
  }
  std::string text = header.dump();
  // Pad with spaces so the data section starts 8-byte aligned, as Python's writer does.
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  uint64_t len = text.size();
  for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<char>((len >> (8 * i)) & 0xff);
  return out + text + data;
}

void save(const std::string& path, const File& file, FloatStorage storage) {
  const std::string bytes = serialize(file, storage);
  const std::string temp = path + ".tmp";
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    if (!out) throw Error("safetensors: " + temp + ": cannot open for writing");
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out) {
      std::remove(temp.c_str());
      throw Error("safetensors: " + temp + ": write failed (disk full?)");
    }
  }
  if (std::rename(temp.c_str(), path.c_str()) != 0) {
    std::remove(temp.c_str());
    throw Error("safetensors: cannot rename " + temp + " to " + path);
  }
}

}  // namespace mrcnn::safetensors
