// Results are bit-identical with 1 and 2 OpenMP threads: every parallel loop is split by the shape.
#include <functional>

#include "tests/helpers.h"

using namespace mrcnn;

namespace {
std::vector<Tensor> workload() {
  Generator g(5);
  Tensor a = randn({300, 500}, kFloat32, kCPU, &g).set_requires_grad(true);
  Tensor b = randn({500, 700}, kFloat32, kCPU, &g).set_requires_grad(true);
  const Tensor big = randn({3, 100000}, kFloat32, kCPU, &g);
  Tensor c = ops::matmul(a, b);
  // A small C over a long K: split along K into chunks summed in order.
  const Tensor deep = ops::matmul(randn({48, 6000}, kFloat32, kCPU, &g), randn({6000, 40}, kFloat32, kCPU, &g));
  Tensor loss = ops::sum(ops::softmax(ops::tanh(c), 1) * c) + ops::mean(ops::exp(ops::neg(ops::abs(c))));
  autograd::backward(loss);
  return {c, deep, loss, a.grad(), b.grad(), ops::sum(big), ops::sum(big, {1}), ops::sum(big, {0}),
          ops::sort(ops::select(big, 0, 0)).values, ops::max(big, 1).values};
}
// The vision ops in float32: the first conv runs the direct kernels (forward, flipped-weight input
// gradient) and the framed weight gradient (AVX-512: tap rows), the second the direct kernel's flat
// tiles and the batch-merged implicit-im2col GEMM, the third (over 4096 pixels) the dot-product
// weight gradient.
std::vector<Tensor> vision_workload() {
  Generator g(6);
  Tensor x = randn({2, 8, 50, 48}, kFloat32, kCPU, &g).set_requires_grad(true);
  Tensor wide = randn({1, 4, 66, 64}, kFloat32, kCPU, &g);
  Tensor w4 = randn({8, 4, 3, 3}, kFloat32, kCPU, &g).set_requires_grad(true);
  Tensor w1 = randn({32, 8, 3, 3}, kFloat32, kCPU, &g).set_requires_grad(true);
  Tensor w2 = randn({64, 32, 3, 3}, kFloat32, kCPU, &g).set_requires_grad(true);
  Tensor w3 = randn({64, 16, 2, 2}, kFloat32, kCPU, &g).set_requires_grad(true);
  Tensor gn_w = ones({64}).set_requires_grad(true);
  Tensor h = ops::relu(ops::conv2d(x, w1, Tensor(), {1, 1}));
  h = ops::max_pool2d(h, {3, 2, 1});
  h = ops::group_norm(ops::conv2d(h, w2, Tensor(), {2, 1}), 8, gn_w);
  Tensor up = ops::interpolate(h, {25, 24}, ops::InterpolateMode::Bilinear);
  const Tensor rois = from_vector<float>({0, 1, 1, 30, 40, 1, 5.5f, 3, 44, 20, 0, -4, 10, 12, 49}, {3, 5});
  Tensor pooled = ops::roi_align(up, rois, 7, 0.5, 2, false);
  Tensor masks = ops::conv_transpose2d(ops::narrow(pooled, 1, 0, 64), ops::reshape(w3, {64, 16, 2, 2}), Tensor(), {2});
  Tensor loss = ops::add(ops::sum(ops::mul(masks, masks)), ops::sum(ops::relu(ops::conv2d(wide, w4, Tensor(), {1, 1}))));
  autograd::backward(loss);
  return {masks, x.grad(), w1.grad(), w2.grad(), w3.grad(), w4.grad(), gn_w.grad()};
}
// Runs `run` with 1 and then 2 threads and requires every result to match bit for bit.
void expect_thread_invariant(const std::function<std::vector<Tensor>()>& run) {
  std::vector<Tensor> one, two;
  {
    const test::ThreadCount single(1);
    one = run();
  }
  {
    const test::ThreadCount pair(2);
    two = run();
  }
  REQUIRE(one.size() == two.size());
  for (size_t i = 0; i < one.size(); ++i) {
    INFO("result " << i);
    CHECK(test::bitwise_equal(one[i], two[i]));
  }
}
}  // namespace

TEST_CASE("threads: conv, pooling, norms, interpolation and roi_align are identical for 1 and 2 threads") {
  expect_thread_invariant(vision_workload);
}

TEST_CASE("threads: matmul, reductions, softmax and backward are identical for 1 and 2 threads") {
  expect_thread_invariant(workload);
}
