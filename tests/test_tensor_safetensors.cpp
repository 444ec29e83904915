// safetensors: round trips, half/bfloat16 conversion, and hostile files rejected with clear errors.
#include <cmath>
#include <cstdio>
#include <fstream>

#include "tensor/safetensors.h"
#include "tests/helpers.h"

using namespace mrcnn;
using test::values;

namespace {

// A file with one header (as text) and `data_bytes` bytes of data.
std::string make_file(const std::string& header, size_t data_bytes, uint64_t declared_len = UINT64_MAX) {
  const uint64_t len = declared_len == UINT64_MAX ? header.size() : declared_len;
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<char>((len >> (8 * i)) & 0xff);
  return out + header + std::string(data_bytes, '\0');
}

// The error parse gives for these bytes (empty if none), after checking that load gives the same
// one for them as a file: load reads the header and then each tensor on its own, so its checks are
// a second route to keep equal.
std::string parse_error(const std::string& bytes) {
  const std::string message = test::error_of([&] { safetensors::parse(bytes, "bad.safetensors"); });
  const std::string path = "hostile_bytes_test.safetensors";
  std::ofstream(path, std::ios::binary) << bytes;
  std::string from_file = test::error_of([&] { safetensors::load(path); });
  std::remove(path.c_str());
  if (const auto at = from_file.find(path); at != std::string::npos) from_file.replace(at, path.size(), "bad.safetensors");
  CHECK(from_file == message);
  return message;
}

}  // namespace

TEST_CASE("safetensors: round trip of every dtype with metadata") {
  safetensors::File f;
  f.metadata["config"] = "{\"num_classes\": 2}";
  f.tensors["a.weight"] = from_vector<float>({1.5f, -2, 3}, {3, 1});
  f.tensors["b"] = from_vector<double>({0.1, 0.2}, {2});
  f.tensors["c"] = from_vector<int64_t>({-1, int64_t(1) << 50}, {2});
  f.tensors["d"] = from_vector<uint8_t>({1, 0, 1, 1}, {2, 2});
  f.tensors["e"] = zeros({0, 4});
  f.tensors["s"] = scalar_tensor(4.0);
  const std::string path = "roundtrip_test.safetensors";
  safetensors::save(path, f);
  const auto back = safetensors::load(path);
  std::remove(path.c_str());
  CHECK(back.metadata == f.metadata);
  REQUIRE(back.tensors.size() == f.tensors.size());
  for (const auto& [name, t] : f.tensors) {
    INFO(name);
    CHECK(test::bitwise_equal(back.tensors.at(name), t));
  }
}

TEST_CASE("safetensors: F16 and BF16 storage round to nearest even") {
  CHECK(safetensors::float_to_half(1.0f) == 0x3c00);
  CHECK(safetensors::float_to_half(65504.0f) == 0x7bff);
  CHECK(safetensors::float_to_half(70000.0f) == 0x7c00);            // overflow to inf
  CHECK(safetensors::float_to_half(5.9604645e-08f) == 0x0001);      // smallest subnormal
  CHECK(safetensors::float_to_half(1.0f + 1.0f / 2048) == 0x3c00);  // halfway: ties to even
  CHECK(safetensors::half_to_float(0x0001) == 5.9604645e-08f);
  CHECK(std::isnan(safetensors::half_to_float(safetensors::float_to_half(NAN))));
  CHECK(safetensors::float_to_bfloat16(1.0f) == 0x3f80);
  CHECK(safetensors::bfloat16_to_float(0x4049) == 3.140625f);
  safetensors::File f;
  f.tensors["x"] = from_vector<float>({0.1f, -3.5f, 1000.25f}, {3});
  const auto f16 = safetensors::parse(safetensors::serialize(f, safetensors::FloatStorage::F16), "f16");
  CHECK(values(f16.tensors.at("x")) == std::vector<double>{0.0999755859375, -3.5, 1000.0});
  const auto bf16 = safetensors::parse(safetensors::serialize(f, safetensors::FloatStorage::BF16), "bf16");
  CHECK(values(bf16.tensors.at("x")) == std::vector<double>{0.10009765625, -3.5, 1000.0});
}

TEST_CASE("safetensors: narrow signed integers widen to int64") {
  std::string bytes = make_file(R"({"a":{"dtype":"I8","shape":[3],"data_offsets":[0,3]},)"
                                R"("b":{"dtype":"I16","shape":[1],"data_offsets":[3,5]},)"
                                R"("c":{"dtype":"I32","shape":[1],"data_offsets":[5,9]}})",
                                9);
  const size_t data = bytes.size() - 9;
  const unsigned char payload[9] = {0x80, 0x7f, 0xff, 0x00, 0x80, 0xfe, 0xff, 0xff, 0xff};
  for (size_t i = 0; i < 9; ++i) bytes[data + i] = static_cast<char>(payload[i]);
  const auto f = safetensors::parse(bytes, "ints");
  CHECK(f.tensors.at("a").dtype() == kInt64);
  CHECK(to_vector<int64_t>(f.tensors.at("a")) == std::vector<int64_t>{-128, 127, -1});
  CHECK(to_vector<int64_t>(f.tensors.at("b")) == std::vector<int64_t>{-32768});
  CHECK(to_vector<int64_t>(f.tensors.at("c")) == std::vector<int64_t>{-2});
}

TEST_CASE("safetensors: hostile files are rejected with one clear error") {
  const std::string ok_entry = R"("t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  CHECK(parse_error(make_file("{" + ok_entry + "}", 8)).empty());
  CHECK(parse_error("abc") == "safetensors: bad.safetensors: file is 3 bytes, too short for the 8-byte header length");
  CHECK(parse_error(make_file("{}", 0, 1000)) ==
        "safetensors: bad.safetensors: header length 1000 runs past the end of the 10-byte file");
  CHECK(parse_error(make_file("{}", 0, uint64_t(1) << 40)) ==
        "safetensors: bad.safetensors: header length 1099511627776 exceeds the 100000000 byte limit");
  CHECK(parse_error(make_file("{\"t\": \xff\xfe}", 0)).find("header is not valid UTF-8 JSON") != std::string::npos);
  CHECK(parse_error(make_file("{\"\xc3\x28\": 1}", 0)).find("header is not valid UTF-8 JSON") != std::string::npos);
  CHECK(parse_error(make_file("[1, 2]", 0)) == "safetensors: bad.safetensors: header is not a JSON object");
  CHECK(parse_error(make_file(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}})", 8)) ==
        "safetensors: bad.safetensors: tensor 't' data_offsets [0, 16] run past the 8-byte data section");
  CHECK(parse_error(make_file(R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8)) ==
        "safetensors: bad.safetensors: tensor 't' has 8 bytes but shape [3] of F32 needs 12");
  CHECK(parse_error(make_file(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8)) ==
        "safetensors: bad.safetensors: tensor 't' data_offsets [8, 0] are reversed");
  CHECK(parse_error(make_file(
            R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
            8)) == "safetensors: bad.safetensors: tensors 'a' and 'b' overlap in the data section");
  CHECK(parse_error(make_file(R"({"t":{"dtype":"Q7","shape":[2],"data_offsets":[0,8]}})", 8)) ==
        "safetensors: bad.safetensors: unsupported dtype 'Q7' (supported: F32, F64, F16, BF16, I64, I32, I16, I8, U8, BOOL)");
  CHECK(parse_error(make_file(R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8)) ==
        "safetensors: bad.safetensors: tensor 't' has a shape entry that is not a non-negative integer");
  CHECK(parse_error(make_file(R"({"t":{"dtype":"F32","shape":[4294967296,4294967296,4],"data_offsets":[0,8]}})", 8)) ==
        "safetensors: bad.safetensors: tensor 't' shape [4294967296, 4294967296, 4] overflows");
  CHECK(parse_error(make_file(R"({"t":{"dtype":"F32","shape":[2]}})", 8)) ==
        "safetensors: bad.safetensors: tensor 't' has no 'data_offsets' pair");
  CHECK(parse_error(make_file(R"({"t":{"dtype":"F32","shape":"2","data_offsets":[0,8]}})", 8)) ==
        "safetensors: bad.safetensors: tensor 't' has no 'shape' array");
  CHECK(parse_error(make_file(R"({"__metadata__":{"k":3}})", 0)) ==
        "safetensors: bad.safetensors: __metadata__ value for 'k' is not a string");
  CHECK(parse_error(make_file(R"({"t":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})", 0) + "\x07") ==
        "safetensors: bad.safetensors: tensor 't' of dtype U8 holds 7; only 0/1 (bool) are supported");
  CHECK(test::error_of([] { safetensors::load("/nonexistent/x.safetensors"); }) ==
        "safetensors: /nonexistent/x.safetensors: cannot open file");
}

TEST_CASE("safetensors: load reads only the tensors a filter keeps, and still checks every header entry") {
  safetensors::File f;
  f.metadata["step"] = "7";
  f.tensors["model.w"] = from_vector<float>({1.5f, -2, 3}, {3});
  f.tensors["model.b"] = from_vector<float>({0.25f}, {1});
  f.tensors["optimizer.w"] = from_vector<double>({4, 5, 6}, {3});
  const std::string path = "filter_test.safetensors";
  safetensors::save(path, f);
  const auto model_only = safetensors::load(path, [](const std::string& name) { return name.rfind("model.", 0) == 0; });
  CHECK(model_only.metadata == f.metadata);
  REQUIRE(model_only.tensors.size() == 2);
  CHECK(test::bitwise_equal(model_only.tensors.at("model.w"), f.tensors.at("model.w")));
  CHECK(test::bitwise_equal(model_only.tensors.at("model.b"), f.tensors.at("model.b")));
  CHECK(safetensors::parse(safetensors::serialize(f), "in memory", [](const std::string& name) { return name == "model.b"; })
            .tensors.size() == 1);
  std::remove(path.c_str());
  // A tensor left out is not read, but its entry must still be sound: here it overlaps a kept one.
  const std::string header =
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})";
  std::ofstream("filter_overlap_test.safetensors", std::ios::binary) << make_file(header, 8);
  CHECK(test::error_of([] { safetensors::load("filter_overlap_test.safetensors", [](const std::string& n) { return n == "a"; }); }) ==
        "safetensors: filter_overlap_test.safetensors: tensors 'a' and 'b' overlap in the data section");
  std::remove("filter_overlap_test.safetensors");
}

TEST_CASE("safetensors: save is atomic and leaves no temporary file") {
  const std::string path = "atomic_test.safetensors";
  safetensors::File f;
  f.tensors["x"] = ones({2});
  safetensors::save(path, f);
  CHECK(!std::ifstream(path + ".tmp").good());
  CHECK(std::ifstream(path).good());
  std::remove(path.c_str());
  CHECK(test::error_of([&] { safetensors::save("/nonexistent/dir/x.safetensors", f); }) ==
        "safetensors: /nonexistent/dir/x.safetensors.tmp: cannot open for writing");
}
