// Tensor metadata, factories, raw views, dtype/device copies, printing and the Philox RNG.
#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <sstream>

#include "bench/allocator_replay.h"
#include "cuda/allocator.h"
#include "cuda/context.h"
#include "tensor/json_number.h"
#include "tensor/strided_index.h"
#include "tests/helpers.h"

using namespace mrcnn;
using test::values;

TEST_CASE("tensor: factories give the requested shape, dtype and values") {
  const Tensor z = zeros({2, 3});
  CHECK(z.sizes() == Shape{2, 3});
  CHECK(z.strides() == Shape{3, 1});
  CHECK(z.dtype() == kFloat32);
  CHECK(values(z) == std::vector<double>(6, 0.0));
  CHECK(values(ones({4}, kFloat64)) == std::vector<double>(4, 1.0));
  CHECK(values(full({2}, 2.5, kFloat64)) == std::vector<double>{2.5, 2.5});
  CHECK(values(arange(5)) == std::vector<double>{0, 1, 2, 3, 4});
  CHECK(arange(5).dtype() == kInt64);
  CHECK(values(arange(1, 2, 0.25, kFloat64)) == std::vector<double>{1, 1.25, 1.5, 1.75});
  CHECK(values(from_vector<uint8_t>({1, 0}, {2})) == std::vector<double>{1, 0});
  CHECK(scalar_tensor(3).dim() == 0);
  CHECK(scalar_tensor(3).numel() == 1);
  CHECK(scalar_tensor(3).item<double>() == 3.0);
  CHECK(empty({0, 5}).numel() == 0);
}

TEST_CASE("tensor: to_vector converts between dtypes, bool keeps 0/1") {
  const Tensor f = from_vector<float>({-1.5f, 0.f, 2.7f}, {3});
  CHECK(to_vector<int64_t>(f) == std::vector<int64_t>{-1, 0, 2});
  CHECK(to_vector<uint8_t>(f) == std::vector<uint8_t>{1, 0, 1});
  CHECK(values(copy_as(f, kFloat64, kCPU))[2] == doctest::Approx(2.7).epsilon(1e-7));
}

TEST_CASE("tensor: as_strided views share storage and reject out-of-range views") {
  const Tensor base = arange(0, 6, 1, kFloat64);
  const Tensor t = base.as_strided({3, 2}, {1, 3}, 0);  // a transposed 2x3
  CHECK(!t.is_contiguous());
  CHECK(values(t) == std::vector<double>{0, 3, 1, 4, 2, 5});
  CHECK(t.storage() == base.storage());
  CHECK(test::error_of([&] { base.as_strided({4, 2}, {2, 1}, 0); }).find("runs past the storage") != std::string::npos);
}

TEST_CASE("tensor: item needs exactly one element") {
  CHECK(test::error_of([] { zeros({2}).item<float>(); }) ==
        "item: tensor of shape [2] has 2 elements, expected exactly one");
}

TEST_CASE("tensor: printing is PyTorch-like") {
  CHECK(from_vector<float>({1, 2.5f}, {2}).str() == "tensor([1.0000, 2.5000], dtype=float32)");
  CHECK(from_vector<int64_t>({1, 2, 3, 4}, {2, 2}).str() == "tensor([[1, 2],\n        [3, 4]], shape=[2, 2], dtype=int64)");
  CHECK(from_vector<uint8_t>({1, 0}, {2}).str() == "tensor([True, False], dtype=bool)");
  const std::string big = arange(2000, kInt64).str();
  CHECK(big.find("[0, 1, 2, ..., 1997, 1998, 1999]") != std::string::npos);
}

TEST_CASE("tensor: shape errors name the op and shapes") {
  CHECK(test::error_of([] { broadcast_shapes({2, 3}, {4}, "add"); }) ==
        "add: shapes [2, 3] and [4] cannot be broadcast together");
  CHECK(test::error_of([] { wrap_dim(3, 2, "sum"); }) == "sum: dim 3 is out of range for a tensor with 2 dimensions");
  CHECK(test::error_of([] { shape_numel({-1, 2}); }) == "invalid shape [-1, 2]: negative size");
  CHECK(test::error_of([] { from_vector<float>({1, 2, 3}, {2, 2}); }) == "from_vector: 3 values do not fill shape [2, 2]");
  CHECK(test::error_of([] { zeros({2}, kInt64).set_requires_grad(true); }) ==
        "set_requires_grad: only floating tensors can require gradients, this one is int64");
}

TEST_CASE("tensor: devices parse and CUDA tensors fail cleanly without a device") {
  CHECK(parse_device("cpu") == kCPU);
  CHECK(parse_device("cuda:1").index == 1);
  CHECK(test::error_of([] { parse_device("gpu"); }) == "unknown device 'gpu': expected cpu, cuda or cuda:N");
}

// Vectors from Random123's kat_vectors file (counter, key -> output).
TEST_CASE("json numbers: read only when the C++ type holds them") {
  using nlohmann::json;
  CHECK(json_number<int64_t>(json::parse("-9223372036854775808"), "x") == INT64_MIN);
  CHECK(json_number<uint64_t>(json::parse("18446744073709551615"), "x") == UINT64_MAX);
  CHECK(json_number<int32_t>(json::parse("3.0"), "x") == 3);  // an integral float is an integer
  CHECK(json_number<uint32_t>(json::parse("4294967295"), "x") == 4294967295u);
  CHECK(json_number<float>(json::parse("1e38"), "x") == 1e38f);
  CHECK(json_number<double>(json::parse("1e300"), "x") == 1e300);
  CHECK(test::error_of([] { json_number<uint32_t>(json::parse("4294967296"), "n"); }) ==
        "n must be a non-negative integer in range, got 4294967296");
  CHECK(test::error_of([] { json_number<int64_t>(json::parse("9223372036854775808"), "n"); }) ==
        "n must be an integer in range, got 9223372036854775808");
  CHECK(test::error_of([] { json_number<int64_t>(json::parse("9.3e18"), "n"); }) == "n must be an integer in range, got 9.3e+18");
  CHECK(test::error_of([] { json_number<int32_t>(json::parse("2.5"), "n"); }) == "n must be an integer in range, got 2.5");
  CHECK(test::error_of([] { json_number<uint64_t>(json::parse("-1"), "n"); }) == "n must be a non-negative integer in range, got -1");
  CHECK(test::error_of([] { json_number<float>(json::parse("1e39"), "n"); }) == "n must be a number in range, got 1e+39");
  CHECK(test::error_of([] { json_number<double>(json::parse("\"1\""), "n"); }) == "n must be a number in range, got string");
  CHECK(json_numbers_fit<std::vector<std::vector<int64_t>>>(json::parse("[[1, 2], [3.0]]")));
  CHECK(!json_numbers_fit<std::vector<std::vector<int64_t>>>(json::parse("[[1, 2], [1e19]]")));
  CHECK(json_numbers_fit<std::vector<int64_t>>(json::parse("\"not numbers\"")));  // left to get<T>()'s type check
}

TEST_CASE("random: Philox4x32-10 matches the Random123 known-answer vectors") {
  const auto zero = philox4x32({0, 0, 0, 0}, {0, 0});
  CHECK(zero == std::array<uint32_t, 4>{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u});
  const auto ones = philox4x32({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu});
  CHECK(ones == std::array<uint32_t, 4>{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu});
  const auto pi = philox4x32({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, {0xa4093822u, 0x299f31d0u});
  CHECK(pi == std::array<uint32_t, 4>{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u});
}

TEST_CASE("random: a seed gives the same numbers, in any chunking and thread count") {
  Generator a(42), b(42);
  const Tensor x = randn({1000}, kFloat32, kCPU, &a);
  const Tensor y = randn({1000}, kFloat32, kCPU, &b);
  CHECK(test::bitwise_equal(x, y));
  CHECK(a.offset() == 250);  // 4 normals per Philox block
  Tensor one_thread, two_threads;
  for (const int threads : {1, 2}) {
    const test::ThreadCount thread_count(threads);
    Generator c(7);
    (threads == 1 ? one_thread : two_threads) = rand({100000}, kFloat64, kCPU, &c);
  }
  CHECK(test::bitwise_equal(one_thread, two_threads));
  // Successive draws continue the stream instead of repeating it.
  Generator e(42);
  const Tensor first = rand({8}, kFloat32, kCPU, &e), second = rand({8}, kFloat32, kCPU, &e);
  CHECK(!test::bitwise_equal(first, second));
}

TEST_CASE("random: rand lies in 0..1, randn has mean 0 and std 1, randint stays in range") {
  Generator g(3);
  const auto u = values(rand({200000}, kFloat32, kCPU, &g));
  double lo = 1, hi = 0, mean = 0;
  for (double v : u) {
    lo = std::min(lo, v);
    hi = std::max(hi, v);
    mean += v / static_cast<double>(u.size());
  }
  CHECK(lo >= 0);
  CHECK(hi < 1);
  CHECK(mean == doctest::Approx(0.5).epsilon(0.01));  // 5 sigma of the mean of 2e5 uniforms is 0.003
  const auto n = values(randn({200000}, kFloat64, kCPU, &g));
  double m = 0, sq = 0;
  for (double v : n) m += v / static_cast<double>(n.size());
  for (double v : n) sq += (v - m) * (v - m) / static_cast<double>(n.size());
  CHECK(std::abs(m) < 0.012);  // 5 sigma for 2e5 normals: 5 / sqrt(2e5) = 0.011
  CHECK(std::sqrt(sq) == doctest::Approx(1.0).epsilon(0.01));
  const auto r = to_vector<int64_t>(randint(-3, 4, {1000}, kCPU, &g));
  CHECK(*std::min_element(r.begin(), r.end()) == -3);
  CHECK(*std::max_element(r.begin(), r.end()) == 3);
}

TEST_CASE("strided index: carried offsets equal the per-element split (multiply-high dividers), any range") {
  // A permuted view and a broadcast operand against a contiguous output [4, 3, 7, 5].
  const Tensor permuted = ops::permute(rand({3, 5, 4, 7}), {2, 0, 3, 1});
  const Tensor broadcast = rand({1, 3, 1, 5});
  const Tensor out = empty({4, 3, 7, 5});
  const auto index = make_strided_index<3>(out.sizes(), {&out, &permuted, &broadcast}, "test");
  CHECK(index.ndim >= 3);
  CHECK(index.use_dividers);  // offsets() below splits the index with multiply-high dividers
  const Tensor huge = ops::expand(full({1, 1}, 1.0), {65536, 65536});  // 2^32 elements: plain division
  CHECK(!make_strided_index<1>(huge.sizes(), {&huge}, "test").use_dividers);
  const int64_t n = out.numel();
  using Range = std::pair<int64_t, int64_t>;
  for (const Range& range : {Range{0, n}, Range{0, 1}, Range{6, 41}, Range{34, 35}, Range{n - 3, n}, Range{100, 100}}) {
    CAPTURE(range.first);
    CAPTURE(range.second);
    std::vector<std::array<int64_t, 3>> carried, divided;
    index.for_each_offsets(range.first, range.second,
                           [&](const int64_t* off) { carried.push_back({off[0], off[1], off[2]}); });
    for (int64_t i = range.first; i < range.second; ++i) {
      int64_t off[3];
      index.offsets(i, off);
      divided.push_back({off[0], off[1], off[2]});
    }
    CHECK(carried.size() == static_cast<size_t>(range.second - range.first));
    CHECK(carried == divided);
  }
  // A scalar: no dims, one element at offset 0.
  const Tensor scalar = full({}, 2.0);
  const auto none = make_strided_index<1>(scalar.sizes(), {&scalar}, "test");
  int calls = 0;
  none.for_each_offsets(0, 1, [&](const int64_t* off) { calls += off[0] == 0; });
  CHECK(calls == 1);
}

TEST_CASE("host block cache: freed large blocks are reused, small ones are not cached") {
  empty_host_cache();
  const HostCacheStats before = host_cache_stats();
  const void* first = nullptr;
  {
    Tensor big = empty({1 << 19});  // 2 MB
    first = big.raw_data();
  }
  CHECK(host_cache_stats().cached_bytes == (size_t{2} << 20));
  {
    Tensor again = empty({(1 << 19) - 1000});  // a little smaller: the same size class
    CHECK(again.raw_data() == first);
    CHECK(host_cache_stats().hits == before.hits + 1);
    CHECK(host_cache_stats().cached_bytes == 0);
  }
  { Tensor small = empty({1000}); }
  CHECK(host_cache_stats().cached_bytes == (size_t{2} << 20));
  empty_host_cache();
  CHECK(host_cache_stats().cached_bytes == 0);
}

TEST_CASE("host block cache: live plus cached blocks stay within 9/8 of the most ever live, oldest freed first") {
  empty_host_cache();
  // A new peak: `big` is larger than anything live before, so the ceiling becomes about 9/8 of it.
  const int64_t big = static_cast<int64_t>(host_cache_stats().ceiling_bytes / 4) + (int64_t{16} << 20) / 4;  // floats
  { Tensor peak = empty({big}); }
  const size_t big_bytes = host_cache_stats().cached_bytes;
  CHECK(big_bytes >= static_cast<size_t>(big) * 4);
  const size_t ceiling = host_cache_stats().ceiling_bytes;
  CHECK(ceiling >= big_bytes + big_bytes / 8);
  {
    // A small miss fits beside the cached block under the ceiling: the block stays cached.
    Tensor small = empty({(1 << 20) / 4});
    CHECK(host_cache_stats().cached_bytes == big_bytes);
  }
  CHECK(host_cache_stats().cached_bytes == big_bytes + (size_t{1} << 20));
  {
    // Half the peak in a new size class would overshoot the ceiling with the big block cached: the
    // oldest block (the big one) is freed; the 1 MB one, younger, stays.
    Tensor half = empty({big / 2});
    CHECK(host_cache_stats().cached_bytes == (size_t{1} << 20));
    CHECK(host_cache_stats().ceiling_bytes == ceiling);  // not a new peak
  }
  empty_host_cache();
  CHECK(host_cache_stats().cached_bytes == 0);
}

TEST_CASE("host memory statistics: bytes held by live tensors and their peak, the cache's reserve excluded") {
  empty_host_cache();
  reset_host_peak_memory();
  const HostMemoryStats base = host_memory_stats();
  CHECK(base.peak_in_use == base.in_use);
  {
    const Tensor a = empty({1 << 19});  // 2 MB (cached when freed)
    const Tensor b = empty({1000}, kFloat64);
    CHECK(host_memory_stats().in_use == base.in_use + (size_t{2} << 20) + 8000);
    const Tensor view = ops::narrow(a, 0, 0, 10);  // a view holds no new storage
    CHECK(host_memory_stats().in_use == base.in_use + (size_t{2} << 20) + 8000);
  }
  CHECK(host_memory_stats().in_use == base.in_use);  // the cached 2 MB block no longer counts
  CHECK(host_cache_stats().cached_bytes == (size_t{2} << 20));
  CHECK(host_memory_stats().peak_in_use == base.in_use + (size_t{2} << 20) + 8000);
  reset_host_peak_memory();
  CHECK(host_memory_stats().peak_in_use == base.in_use);
  empty_host_cache();
}

// --- CUDA caching allocator: bookkeeping tested with host memory standing in for the device ------
namespace {
constexpr size_t kMiB = size_t(1) << 20;

// A "device" of `budget` bytes: host memory, counting the driver calls.
struct FakeDevice {
  size_t budget, taken = 0;
  int mallocs = 0, frees = 0;
  std::map<void*, size_t> sizes;
  explicit FakeDevice(size_t bytes) : budget(bytes) {}
  cuda::CachingAllocator allocator() {
    return cuda::CachingAllocator(
        [this](size_t n) -> void* {
          if (taken + n > budget) return nullptr;
          taken += n;
          ++mallocs;
          void* p = std::malloc(n);
          sizes[p] = n;
          return p;
        },
        [this](void* p) {
          ++frees;
          taken -= sizes.at(p);
          sizes.erase(p);
          std::free(p);
        });
  }
};
}  // namespace

TEST_CASE("caching allocator: small pool size classes, reuse, statistics") {
  FakeDevice device(64 * kMiB);
  cuda::CachingAllocator allocator = device.allocator();
  CHECK(cuda::CachingAllocator::rounded_size(1) == 512);
  CHECK(cuda::CachingAllocator::rounded_size(513) == 1024);
  CHECK(cuda::CachingAllocator::rounded_size(kMiB - 1) == kMiB);
  CHECK(cuda::CachingAllocator::rounded_size(kMiB + 1) == kMiB + 512);  // large requests too: 512 B steps
  CHECK(allocator.allocate(0) == nullptr);
  void* a = allocator.allocate(1000);  // 1024
  allocator.release(a);
  CHECK(allocator.stats().cached == 1024);
  void* c = allocator.allocate(600);  // same class: the cached block comes back, no driver call
  CHECK(c == a);
  void* d = allocator.allocate(100);  // another class: from the driver
  CHECK(d != a);
  CHECK(device.mallocs == 2);
  const cuda::MemoryStats s = allocator.stats();
  CHECK(s.requests == 3);
  CHECK(s.cache_hits == 1);
  CHECK(s.driver_allocs == 2);
  CHECK(s.segments == 2);
  CHECK(s.in_use == 1024 + 512);
  CHECK(s.reserved == 1024 + 512);
  CHECK(s.peak_in_use == 1024 + 512);
  // As requested: 600 + 100 now; 1000 was the peak of the first block alone, 700 the peak of both.
  CHECK(s.requested_in_use == 700);
  CHECK(s.peak_requested == 1000);
  allocator.release(c);
  allocator.release(d);
  allocator.empty_cache();
  CHECK(allocator.stats().reserved == 0);
  CHECK(allocator.stats().segments == 0);
  CHECK(device.frees == device.mallocs);
  CHECK(test::error_of([&] { allocator.release(&device); }) == "CUDA allocator: release of a pointer it did not allocate");
}

TEST_CASE("caching allocator: large blocks split from segments, best fit, merge on release") {
  FakeDevice device(256 * kMiB);
  cuda::CachingAllocator allocator = device.allocator();
  CHECK(cuda::CachingAllocator::segment_size(kMiB) == 20 * kMiB);
  CHECK(cuda::CachingAllocator::segment_size(10 * kMiB) == 20 * kMiB);
  CHECK(cuda::CachingAllocator::segment_size(10 * kMiB + 512) == 12 * kMiB);
  char* a = static_cast<char*>(allocator.allocate(3 * kMiB));
  char* b = static_cast<char*>(allocator.allocate(5 * kMiB + 1));  // 5 MiB + 512
  char* c = static_cast<char*>(allocator.allocate(4 * kMiB));
  CHECK(device.mallocs == 1);  // one 20 MiB segment, cut in order
  CHECK(b == a + 3 * kMiB);
  CHECK(c == b + 5 * kMiB + 512);
  cuda::MemoryStats s = allocator.stats();
  CHECK(s.in_use == 12 * kMiB + 512);  // what was asked for, within 512 B: not 2 MiB classes
  CHECK(s.requested_in_use == 12 * kMiB + 1);
  CHECK(s.reserved == 20 * kMiB);
  CHECK(s.cached == 8 * kMiB - 512);
  CHECK(s.cache_hits == 2);
  // Best fit: a 2 MiB request takes the freed 3 MiB block (smaller than the 8 MiB tail), split.
  allocator.release(a);
  char* d = static_cast<char*>(allocator.allocate(2 * kMiB));
  CHECK(d == a);
  // The 1 MiB left of it and freed b merge into one block of 6 MiB + 512 B: a request of that size
  // fits there exactly (at a + 2 MiB) instead of taking the tail after c.
  allocator.release(b);
  char* e = static_cast<char*>(allocator.allocate(6 * kMiB + 512));
  CHECK(e == a + 2 * kMiB);
  CHECK(device.mallocs == 1);
  // Over 10 MiB: a segment of its own, rounded up to 2 MiB.
  void* big = allocator.allocate(11 * kMiB);
  CHECK(device.mallocs == 2);
  CHECK(device.sizes.at(big) == 12 * kMiB);
  CHECK(allocator.stats().reserved == 32 * kMiB);
  CHECK(allocator.stats().segments == 2);
  // empty_cache hands back whole free segments only: the big one, not the one c, d and e live in.
  allocator.release(big);
  allocator.empty_cache();
  CHECK(device.frees == 1);
  CHECK(allocator.stats().reserved == 20 * kMiB);
  // Released in any order, the pieces merge back into the whole segment: a 20 MiB request reuses it.
  allocator.release(e);
  allocator.release(c);
  allocator.release(d);
  CHECK(allocator.stats().in_use == 0);
  CHECK(allocator.stats().cached == 20 * kMiB);
  void* whole = allocator.allocate(20 * kMiB);
  CHECK(whole == a);
  CHECK(device.mallocs == 2);
  CHECK(allocator.stats().peak_reserved == 32 * kMiB);
  allocator.reset_peak();
  CHECK(allocator.stats().peak_reserved == 20 * kMiB);
  CHECK(allocator.stats().peak_in_use == 20 * kMiB);
  allocator.release(whole);
  allocator.empty_cache();
  CHECK(device.frees == device.mallocs);
  CHECK(allocator.stats().reserved == 0);
  CHECK(allocator.stats().cached == 0);
}

TEST_CASE("caching allocator: out of memory hands the cache back, then tries the bare size, then throws") {
  FakeDevice device(24 * kMiB);
  cuda::CachingAllocator allocator = device.allocator();
  void* small = allocator.allocate(1000);
  allocator.release(small);
  void* a = allocator.allocate(2 * kMiB);  // a 20 MiB segment
  allocator.release(a);
  // 22 MiB fits only once the cached segment and small block are given back.
  void* big = allocator.allocate(22 * kMiB);
  CHECK(big != nullptr);
  CHECK(device.frees == 2);
  CHECK(allocator.stats().reserved == 22 * kMiB);
  // 2 MiB more: no room for a 20 MiB segment, but for 2 MiB alone.
  void* tail = allocator.allocate(kMiB + 512);
  CHECK(device.sizes.at(tail) == 2 * kMiB);
  CHECK(test::error_of([&] { allocator.allocate(16 * kMiB); })
            .rfind("CUDA out of memory: could not allocate 16777216 bytes (24117760 bytes in use by tensors, 25165824 reserved)", 0) == 0);
  allocator.release(big);
  allocator.release(tail);
  allocator.empty_cache();
  CHECK(device.frees == device.mallocs);
}

TEST_CASE("caching allocator: random traffic keeps blocks disjoint and the books balanced") {
  FakeDevice device(size_t(1) << 30);
  cuda::CachingAllocator allocator = device.allocator();
  std::mt19937_64 engine(11);
  auto uniform = [&] { return std::uniform_real_distribution<double>(0, 1)(engine); };
  struct Live {
    unsigned char* ptr;
    size_t bytes;
    unsigned char tag;
  };
  std::vector<Live> live;
  size_t requested = 0;
  for (int step = 0; step < 4000; ++step) {
    const bool grow = live.empty() || (live.size() < 60 && uniform() < 0.55);
    if (grow) {
      // Sizes across both pools and the segment rule: 1 B .. 1 MiB, 1 .. 10 MiB, 10 .. 30 MiB.
      const double u = uniform();
      const size_t limit = u < 0.4 ? kMiB : u < 0.9 ? 10 * kMiB : 30 * kMiB;
      const size_t bytes = 1 + static_cast<size_t>(uniform() * static_cast<double>(limit));
      const auto tag = static_cast<unsigned char>(step);
      auto* p = static_cast<unsigned char*>(allocator.allocate(bytes));
      std::fill(p, p + bytes, tag);  // a block shared by two owners shows up as a changed byte
      live.push_back({p, bytes, tag});
      requested += bytes;
    } else {
      const size_t k = static_cast<size_t>(uniform() * static_cast<double>(live.size())) % live.size();
      const Live l = live[k];
      CHECK(std::all_of(l.ptr, l.ptr + l.bytes, [&](unsigned char v) { return v == l.tag; }));
      allocator.release(l.ptr);
      requested -= l.bytes;
      live.erase(live.begin() + static_cast<std::ptrdiff_t>(k));
    }
    const cuda::MemoryStats s = allocator.stats();
    size_t rounded = 0;
    for (const Live& l : live) rounded += cuda::CachingAllocator::rounded_size(l.bytes);
    REQUIRE(s.requested_in_use == requested);
    REQUIRE(s.in_use == rounded);
    REQUIRE(s.reserved == s.in_use + s.cached);
    REQUIRE(s.reserved == device.taken);
  }
  for (const Live& l : live) {
    CHECK(std::all_of(l.ptr, l.ptr + l.bytes, [&](unsigned char v) { return v == l.tag; }));
    allocator.release(l.ptr);
  }
  // Everything merged back into whole segments: all of it goes back to the driver.
  allocator.empty_cache();
  CHECK(allocator.stats().reserved == 0);
  CHECK(allocator.stats().segments == 0);
  CHECK(device.frees == device.mallocs);
  CHECK(allocator.stats().cache_hits > allocator.stats().requests / 2);
}

TEST_CASE("allocation trace: the host observer sees each storage made and freed, and the replay's figures") {
  static std::vector<std::pair<size_t, bool>> seen;
  seen.clear();
  set_host_allocation_observer([](const void*, size_t nbytes, bool made) { seen.emplace_back(nbytes, made); });
  { const Tensor t = empty({10}, kFloat64); }
  set_host_allocation_observer(nullptr);
  { const Tensor unseen = empty({3}); }
  CHECK(seen == std::vector<std::pair<size_t, bool>>{{80, true}, {80, false}});

  // Old rules: 1000 -> 1024, 3 MiB -> a 4 MiB class, then 2 MiB -> a new 2 MiB class. Best fit: the
  // 3 MiB block comes from a 20 MiB segment and serves the 2 MiB request after it.
  std::istringstream trace("# comment\nphase a\n+ 1 1000\n+ 2 3145728\n- 2 3145728\n+ 3 2097152\n"
                           "phase b\n- 1 1000\n- 9 77\n+ 4 0\n");
  const std::vector<bench::ReplayedPhase> phases = bench::replay_allocation_trace(trace, "t.txt");
  REQUIRE(phases.size() == 2);
  CHECK(phases[0].name == "a");
  const bench::AllocatorFigures& old_a = phases[0].size_classes;
  CHECK(old_a.peak_in_use == 1024 + 4 * kMiB);
  CHECK(old_a.peak_requested == 1000 + 3 * kMiB);
  CHECK(old_a.peak_reserved == 1024 + 6 * kMiB);
  CHECK(old_a.driver_allocs == 3);
  const bench::AllocatorFigures& new_a = phases[0].best_fit;
  CHECK(new_a.peak_in_use == 1024 + 3 * kMiB);
  CHECK(new_a.peak_requested == 1000 + 3 * kMiB);
  CHECK(new_a.peak_reserved == 1024 + 20 * kMiB);
  CHECK(new_a.driver_allocs == 2);
  // Phase b starts from what phase a left (its peaks restart; driver allocations count from the start).
  CHECK(phases[1].name == "b");
  CHECK(phases[1].size_classes.peak_in_use == 1024 + 2 * kMiB);
  CHECK(phases[1].size_classes.peak_reserved == 1024 + 6 * kMiB);
  CHECK(phases[1].best_fit.peak_in_use == 1024 + 2 * kMiB);
  CHECK(phases[1].best_fit.peak_requested == 1000 + 2 * kMiB);
  CHECK(phases[1].best_fit.driver_allocs == 2);
  std::istringstream bad("phase a\n+ 1\n");
  CHECK(test::error_of([&] { bench::replay_allocation_trace(bad, "t.txt"); }) ==
        "t.txt:2: expected '+ id bytes', '- id bytes' or 'phase NAME', got '+ 1'");
  std::istringstream twice("+ 1 10\n+ 1 10\n");
  CHECK(test::error_of([&] { bench::replay_allocation_trace(twice, "t.txt"); }) == "t.txt:2: id 1 made twice without a release");
}

TEST_CASE("cuda: tensors come from the caching allocator, copies round-trip through pinned staging") {
  if (test::setup_real_cuda_or_skip("CUDA allocator")) return;
  cuda::empty_cache();
  const cuda::MemoryStats before = cuda::memory_stats();
  {
    const Tensor t = zeros({1000, 1000}, kFloat32, kCUDA);  // 4 MB: cut from a 20 MiB segment
    CHECK(cuda::memory_stats().in_use >= before.in_use + 4000000);
  }
  const cuda::MemoryStats after_free = cuda::memory_stats();
  CHECK(after_free.cached >= 4000000);
  const Tensor again = zeros({1000, 1000}, kFloat32, kCUDA);
  CHECK(cuda::memory_stats().cache_hits > after_free.cache_hits);
  // 20 MB crosses several 8 MiB staging chunks both ways.
  Generator g(3);
  const Tensor big = randn({5, 1000, 1000}, kFloat32, kCPU, &g);
  CHECK(test::bitwise_equal(big, ops::to(ops::to(big, kCUDA), kCPU)));
  const Tensor odd = arange(0, 12345, 1, kFloat64);
  CHECK(test::bitwise_equal(odd, ops::to(ops::to(odd, kCUDA), kCPU)));
  // Transfers are counted (bench --profile reports them per step): one call each way, its bytes.
  cuda::reset_transfer_stats();
  const Tensor there = ops::to(odd, kCUDA);
  const Tensor back = ops::to(there, kCPU);
  const cuda::TransferStats t = cuda::transfer_stats();
  CHECK(t.uploads == 1);
  CHECK(t.upload_bytes == 12345 * 8);
  CHECK(t.downloads == 1);
  CHECK(t.download_bytes == 12345 * 8);
}
