// Results are bit-identical with 1 and 2 OpenMP threads: every parallel loop is split by the shape.
#include "tests/helpers.h"

using namespace mrcnn;

namespace {
struct ThreadCount {
  explicit ThreadCount(int n) : saved(num_threads()) { set_num_threads(n); }
  ~ThreadCount() { set_num_threads(saved); }
  int saved;
};

std::vector<Tensor> workload() {
  Generator g(5);
  Tensor a = randn({300, 500}, kFloat32, kCPU, &g).set_requires_grad(true);
  Tensor b = randn({500, 700}, kFloat32, kCPU, &g).set_requires_grad(true);
  const Tensor big = randn({3, 100000}, kFloat32, kCPU, &g);
  Tensor c = ops::matmul(a, b);
  Tensor loss = ops::sum(ops::softmax(ops::tanh(c), 1) * c) + ops::mean(ops::exp(ops::neg(ops::abs(c))));
  autograd::backward(loss);
  return {c, loss, a.grad(), b.grad(), ops::sum(big), ops::sum(big, {1}), ops::sum(big, {0}),
          ops::sort(ops::select(big, 0, 0)).values, ops::max(big, 1).values};
}
}  // namespace

TEST_CASE("threads: matmul, reductions, softmax and backward are identical for 1 and 2 threads") {
  std::vector<Tensor> one, two;
  {
    ThreadCount t(1);
    one = workload();
  }
  {
    ThreadCount t(2);
    two = workload();
  }
  REQUIRE(one.size() == two.size());
  for (size_t i = 0; i < one.size(); ++i) {
    INFO("result " << i);
    CHECK(test::bitwise_equal(one[i], two[i]));
  }
}
