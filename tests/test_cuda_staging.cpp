// The pinned staging ring behind host<->GPU copies: its bookkeeping with stand-in events (any
// machine), and uploads and downloads through it on a GPU.
#include <random>

#include "cuda/context.h"
#include "cuda/staging_ring.h"
#include "ops/ops.h"
#include "tests/helpers.h"

using namespace mrcnn;

namespace {

// Events are numbers in the order recorded; the ring's waits and recycles are logged.
struct LoggedEvents {
  using Event = int;
  int recorded = 0;
  std::vector<int> waited, recycled;
  int record() { return recorded++; }
  void wait(int event) { waited.push_back(event); }
  void recycle(int event) { recycled.push_back(event); }
};

using Ring = cuda::StagingRing<LoggedEvents>;

// acquire + submitted, as a copy does; returns the offset.
size_t copy_through(Ring& ring, size_t size) {
  const size_t at = ring.acquire(size);
  ring.submitted(at, size);
  return at;
}

}  // namespace

TEST_CASE("staging ring: small regions go back to back without waiting until the ring wraps") {
  Ring ring(1000, 100, LoggedEvents{});
  for (size_t i = 0; i < 10; ++i) CHECK(copy_through(ring, 100) == 100 * i);
  CHECK(ring.events().waited.empty());
  CHECK(ring.regions_in_flight() == 10);
  // The eleventh wraps onto the first region, and waits for that one only; then the second.
  CHECK(copy_through(ring, 100) == 0);
  CHECK(ring.events().waited == std::vector<int>{0});
  CHECK(copy_through(ring, 150) == 100);
  CHECK(ring.events().waited == std::vector<int>{0, 1, 2});  // [100, 250) overlaps regions 1 and 2
  CHECK(ring.events().recycled == ring.events().waited);
}

TEST_CASE("staging ring: a wrap also waits for the older regions in the tail it skips, oldest first") {
  Ring ring(1000, 100, LoggedEvents{});
  CHECK(copy_through(ring, 950) == 0);    // event 0: [0, 950)
  CHECK(copy_through(ring, 40) == 950);   // event 1: [950, 990)
  CHECK(copy_through(ring, 900) == 0);    // wraps: [0, 900) overlaps event 0's region
  CHECK(ring.events().waited == std::vector<int>{0});
  CHECK(copy_through(ring, 40) == 900);   // event 3: [900, 940), nothing in the way
  CHECK(ring.events().waited == std::vector<int>{0});
  // [940, 1000) is too short for 100 bytes: the region goes to [0, 100), which overlaps event 2's
  // [0, 900) but not event 1's [950, 990). Event 1's region is older than event 2's, so it must be
  // retired first (the ring only retires from its oldest end); event 3's stays in flight.
  CHECK(copy_through(ring, 100) == 0);
  CHECK(ring.events().waited == std::vector<int>{0, 1, 2});
  CHECK(ring.regions_in_flight() == 2);
}

TEST_CASE("staging ring: at most max_regions in flight, and a download waits for its own region") {
  Ring ring(1 << 20, 4, LoggedEvents{});
  for (int i = 0; i < 4; ++i) copy_through(ring, 10);
  CHECK(ring.events().waited.empty());
  copy_through(ring, 10);
  CHECK(ring.events().waited == std::vector<int>{0});
  CHECK(ring.regions_in_flight() == 4);
  ring.wait_for_newest();
  CHECK(ring.events().waited == std::vector<int>{0, 4});
  CHECK(ring.regions_in_flight() == 4);  // waited for, not retired: its event is recycled later
}

TEST_CASE("staging ring: random traffic never hands out bytes the GPU may still use") {
  std::mt19937_64 rng(7);
  for (const size_t capacity : {size_t(1000), size_t(4096), size_t(1) << 16}) {
    CAPTURE(capacity);
    Ring ring(capacity, 64, LoggedEvents{});
    struct Live {
      size_t begin, end;
      int event;
    };
    std::vector<Live> live;  // submitted regions whose event has not been waited for
    size_t waits_seen = 0;
    for (int step = 0; step < 20000; ++step) {
      // Mostly small copies, now and then one up to the whole ring.
      const size_t size = rng() % 8 == 0 ? 1 + rng() % capacity : 1 + rng() % (capacity / 16);
      const size_t at = ring.acquire(size);
      const auto& waited = ring.events().waited;
      for (; waits_seen < waited.size(); ++waits_seen) {
        // Waits retire regions oldest first.
        REQUIRE(!live.empty());
        REQUIRE(waited[waits_seen] == live.front().event);
        live.erase(live.begin());
      }
      REQUIRE(at + size <= capacity);
      for (const Live& l : live) REQUIRE((at + size <= l.begin || l.end <= at));
      ring.submitted(at, size);
      live.push_back({at, at + size, ring.events().recorded - 1});
      REQUIRE(live.size() <= 64);
    }
    CHECK(ring.events().recycled == ring.events().waited);
  }
}

TEST_CASE("staging ring: impossible requests are errors") {
  Ring ring(1000, 8, LoggedEvents{});
  CHECK(test::error_of([&] { ring.acquire(0); }) == "StagingRing: region of 0 bytes in a 1000-byte buffer");
  CHECK(test::error_of([&] { ring.acquire(1001); }) == "StagingRing: region of 1001 bytes in a 1000-byte buffer");
  CHECK(test::error_of([&] { ring.wait_for_newest(); }) == "StagingRing: nothing submitted to wait for");
  CHECK(test::error_of([] { Ring(0, 8, LoggedEvents{}); }) == "StagingRing: capacity and max_regions must be positive");
}

TEST_CASE("cuda: copies of mixed sizes round-trip through the ring, and small uploads behind a busy GPU never wait") {
  if (test::setup_real_cuda_or_skip("pinned staging ring")) return;
  // Sizes from a few bytes to twice the ring's 16 MiB, interleaved, so the ring wraps and chunks.
  Generator g(5);
  std::vector<Tensor> originals, on_gpu;
  for (const int64_t n : {1, 3, 1000, 70000, 2000000, 5, 8000000, 123457, 1, 4000000, 64, 333333}) {
    originals.push_back(randn({n}, kFloat32, kCPU, &g));
    on_gpu.push_back(ops::to(originals.back(), kCUDA));
  }
  for (size_t i = 0; i < originals.size(); ++i) {
    CAPTURE(i);
    CHECK(test::bitwise_equal(originals[i], ops::to(on_gpu[i], kCPU)));
  }
  // A long queue of GPU work (ten float32 4096^3 products, milliseconds each), then 100 small
  // uploads: each must return without waiting for that queue.
  const Tensor a = randn({4096, 4096}, kFloat32, kCUDA, &g);
  Tensor product = a;
  for (int i = 0; i < 10; ++i) product = ops::matmul(product, a);
  cuda::reset_transfer_stats();
  std::vector<Tensor> small_ones;
  for (int i = 0; i < 100; ++i) small_ones.push_back(ops::to(full({256}, static_cast<double>(i), kFloat32), kCUDA));
  const cuda::TransferStats t = cuda::transfer_stats();
  CHECK(t.uploads == 100);
  CHECK(t.upload_wait_ns < 2000000);  // < 2 ms in all; the queued products take tens of ms
  CHECK(t.downloads == 0);
  for (int i = 0; i < 100; ++i) CHECK(to_vector<float>(ops::to(small_ones[i], kCPU))[255] == static_cast<float>(i));
  // A download waits for the GPU's queue and then for its bytes: that time is counted.
  cuda::reset_transfer_stats();
  const Tensor total = ops::to(ops::sum(product), kCPU);
  CHECK(total.numel() == 1);
  CHECK(cuda::transfer_stats().downloads == 1);
  CHECK(cuda::transfer_stats().download_wait_ns > 0);
}
