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

namespace {

// The header length the file's first 8 bytes (`first`: fewer if the file is shorter) declare,
// checked against the file's size and the limit.
uint64_t header_length(std::string_view first, uint64_t file_size, const std::string& name) {
  if (first.size() < 8) fail(name, str_cat("file is ", file_size, " bytes, too short for the 8-byte header length"));
  const uint64_t header_len = read_u64_le(reinterpret_cast<const unsigned char*>(first.data()));
  if (header_len > kMaxHeaderBytes) fail(name, str_cat("header length ", header_len, " exceeds the ", kMaxHeaderBytes, " byte limit"));
  if (header_len > file_size - 8)
    fail(name, str_cat("header length ", header_len, " runs past the end of the ", file_size, "-byte file"));
  return header_len;
}

// One tensor's header entry, validated: its bytes are data section [begin, end).
struct Entry {
  std::string key;
  DiskType type;
  Shape shape;
  int64_t numel;
  uint64_t begin, end;
};

struct Header {
  std::vector<Entry> entries;
  std::map<std::string, std::string> metadata;
};

// The JSON header, every field checked against a data section of data_size bytes (offsets in range,
// sizes matching the shapes, no two tensors sharing bytes).
Header parse_header(std::string_view text, uint64_t data_size, const std::string& name) {
  json header;
  try {
    header = json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    fail(name, std::string("header is not valid UTF-8 JSON: ") + e.what());
  }
  if (!header.is_object()) fail(name, "header is not a JSON object");
  Header out;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& key = it.key();
    const json& entry = it.value();
    if (key == "__metadata__") {
      if (!entry.is_object()) fail(name, "__metadata__ is not an object");
      for (auto m = entry.begin(); m != entry.end(); ++m) {
        if (!m.value().is_string()) fail(name, "__metadata__ value for '" + m.key() + "' is not a string");
        out.metadata[m.key()] = m.value().get<std::string>();
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
    out.entries.push_back({key, type, shape, numel, begin, end});
  }
  // Two tensors must never share bytes.
  std::vector<size_t> order(out.entries.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  const auto range = [&](size_t i) { return std::make_pair(out.entries[i].begin, out.entries[i].end); };
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return range(a) < range(b); });
  uint64_t covered_to = 0;  // end of the furthest non-empty range seen so far
  size_t covered_by = 0;
  for (size_t i : order) {
    const Entry& e = out.entries[i];
    if (e.begin == e.end) continue;
    if (e.begin < covered_to)
      fail(name, "tensors '" + out.entries[covered_by].key + "' and '" + e.key + "' overlap in the data section");
    if (e.end > covered_to) {
      covered_to = e.end;
      covered_by = i;
    }
  }
  return out;
}

// The tensor the entry's bytes (at src) hold, widened or checked as the dtype needs.
Tensor convert(const Entry& e, const char* src, const std::string& name) {
  const std::string dt = e.type.name;
  const int64_t numel = e.numel;
  Tensor t;
  if (dt == "F32" || dt == "F16" || dt == "BF16") {
    t = empty(e.shape, kFloat32);
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
    t = empty(e.shape, dt == "F64" ? kFloat64 : kInt64);
    if (numel) std::memcpy(t.raw_data(), src, static_cast<size_t>(numel) * 8);
  } else if (dt == "I32" || dt == "I16" || dt == "I8") {
    // Narrow signed integers widen to int64 (exact); the parity fixture stores int8 weight codes.
    t = empty(e.shape, kInt64);
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
    t = empty(e.shape, kBool);
    uint8_t* out = t.data<uint8_t>();
    for (int64_t i = 0; i < numel; ++i) {
      const uint8_t v = static_cast<uint8_t>(src[i]);
      if (v > 1) fail(name, str_cat("tensor '", e.key, "' of dtype ", dt, " holds ", int(v), "; only 0/1 (bool) are supported"));
      out[i] = v;
    }
  }
  return t;
}

}  // namespace

File parse(std::string_view bytes, const std::string& name, const TensorFilter& keep) {
  const uint64_t header_len = header_length(bytes.substr(0, 8), bytes.size(), name);
  const Header header = parse_header(bytes.substr(8, header_len), bytes.size() - 8 - header_len, name);
  const char* data = bytes.data() + 8 + header_len;
  File file;
  file.metadata = header.metadata;
  for (const Entry& e : header.entries)
    if (!keep || keep(e.key)) file.tensors[e.key] = convert(e, data + e.begin, name);
  return file;
}

File load(const std::string& path, const TensorFilter& keep) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open file");
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size < 0) fail(path, "cannot read file size");
  in.seekg(0);
  const auto file_size = static_cast<uint64_t>(size);
  char length[8];
  if (file_size >= 8 && !in.read(length, 8)) fail(path, "read error");
  const uint64_t header_len = header_length(std::string_view(length, std::min<uint64_t>(file_size, 8)), file_size, path);
  std::string text(static_cast<size_t>(header_len), '\0');
  if (header_len > 0 && !in.read(text.data(), static_cast<std::streamsize>(header_len))) fail(path, "read error");
  const Header header = parse_header(text, file_size - 8 - header_len, path);
  // Only the kept tensors' bytes are read, each straight from the file: float32 into the tensor
  // itself, others through a buffer and converted. (Reading the whole file first cost a second copy
  // of it, and of the optimizer state that predict never uses.)
  File file;
  file.metadata = header.metadata;
  std::vector<char> buffer;
  for (const Entry& e : header.entries) {
    if (keep && !keep(e.key)) continue;
    const uint64_t bytes = e.end - e.begin;
    in.seekg(static_cast<std::streamoff>(8 + header_len + e.begin));
    if (std::string(e.type.name) == "F32") {
      Tensor t = empty(e.shape, kFloat32);
      if (bytes && !in.read(static_cast<char*>(t.raw_data()), static_cast<std::streamsize>(bytes))) fail(path, "read error");
      file.tensors[e.key] = t;
      continue;
    }
    buffer.resize(static_cast<size_t>(bytes));
    if (bytes && !in.read(buffer.data(), static_cast<std::streamsize>(bytes))) fail(path, "read error");
    file.tensors[e.key] = convert(e, buffer.data(), path);
  }
  return file;
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
