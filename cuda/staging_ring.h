// Host<->device copies pass through pinned (page-locked) host memory: the GPU's copy engine reads and
// writes it asynchronously, pageable memory it cannot. StagingRing hands out regions of one pinned
// buffer in ring order and keeps, per region still in use, the event after which the GPU is done
// with it. A new region waits only for the older regions it overlaps. So a burst of small uploads
// (the sampled RoIs' indices and targets, a few KB each) never waits for the GPU; with two
// whole-buffer slots, the third upload of a burst waited until the GPU had run everything queued
// before the first, draining its queue.
//
// Plain C++ over an event policy (Event record(); void wait(Event); void recycle(Event)), so the
// bookkeeping is tested without a GPU (tests/test_cuda_staging.cpp). Not thread-safe: the caller
// holds a lock.
#pragma once
#include <cstddef>
#include <deque>
#include <utility>

#include "tensor/error.h"

namespace mrcnn::cuda {

template <class Events>
class StagingRing {
 public:
  using Event = typename Events::Event;

  // At most max_regions in flight: tiny copies must not pile up thousands of events (by the time the
  // ring has handed out that many, the oldest is long done and waiting for it costs nothing).
  StagingRing(size_t capacity, size_t max_regions, Events events)
      : capacity_(capacity), max_regions_(max_regions), events_(std::move(events)) {
    check(capacity > 0 && max_regions > 0, "StagingRing: capacity and max_regions must be positive");
  }

  // Where `size` (1..capacity) bytes may be written now: at the end of the newest region, or at the
  // buffer's start when they would cross its end. Every older region the new one overlaps is waited
  // for first (oldest first, so its event and memory are free again), and so is every region in the
  // tail a wrap skips: regions lie in the buffer in the order they were handed out, so those are
  // older than any the new one can overlap.
  size_t acquire(size_t size) {
    check(size > 0 && size <= capacity_, "StagingRing: region of ", size, " bytes in a ", capacity_, "-byte buffer");
    const bool wraps = head_ + size > capacity_;
    const size_t start = wraps ? 0 : head_;
    while (!in_flight_.empty()) {
      const Region& oldest = in_flight_.front();
      const bool overlaps = oldest.begin < start + size && start < oldest.end;
      const bool in_skipped_tail = wraps && oldest.end > head_;
      if (!overlaps && !in_skipped_tail && in_flight_.size() < max_regions_) break;
      events_.wait(oldest.event);
      events_.recycle(oldest.event);
      in_flight_.pop_front();
    }
    return start;
  }

  // The copy that uses [offset, offset + size) (from acquire) has been queued: an event recorded now
  // says when the GPU is done with the region.
  void submitted(size_t offset, size_t size) {
    in_flight_.push_back({offset, offset + size, events_.record()});
    head_ = offset + size;
  }

  // Waits until the GPU is done with the newest region (a download's bytes have arrived).
  void wait_for_newest() {
    check(!in_flight_.empty(), "StagingRing: nothing submitted to wait for");
    events_.wait(in_flight_.back().event);
  }

  size_t capacity() const { return capacity_; }
  size_t regions_in_flight() const { return in_flight_.size(); }
  Events& events() { return events_; }

 private:
  struct Region {
    size_t begin, end;
    Event event;
  };
  size_t capacity_, max_regions_;
  size_t head_ = 0;  // end of the newest region
  std::deque<Region> in_flight_;  // oldest first
  Events events_;
};

}  // namespace mrcnn::cuda
