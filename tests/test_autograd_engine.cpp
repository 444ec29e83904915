// The backward engine: accumulation into leaves, graph release, NoGradGuard, detach, shape checks.
#include <map>

#include "tests/helpers.h"

using namespace mrcnn;
using test::values;

TEST_CASE("autograd: gradients accumulate into leaves across uses and calls") {
  Tensor x = from_vector<double>({1, 2, 3}, {3}).set_requires_grad(true);
  // y = sum(x * x + x): dy/dx = 2x + 1, x used twice in one graph.
  Tensor y = ops::sum(x * x + x);
  autograd::backward(y);
  CHECK(values(x.grad()) == std::vector<double>{3, 5, 7});
  // A second graph accumulates on top, like PyTorch.
  autograd::backward(ops::sum(x * 2.0));
  CHECK(values(x.grad()) == std::vector<double>{5, 7, 9});
  x.zero_grad();
  CHECK(!x.grad().defined());
}

TEST_CASE("autograd: backward with an explicit gradient, and its shape is checked") {
  Tensor x = from_vector<double>({1, 2}, {2}).set_requires_grad(true);
  Tensor y = x * 3.0;
  CHECK(test::error_of([&] { autograd::backward(y); }) ==
        "backward: gradient can be implicit only for one-element outputs, this one has shape [2]");
  CHECK(test::error_of([&] { autograd::backward(y, ones({3}, kFloat64), true); }) ==
        "autograd: backward's grad argument produced a gradient of shape [3] for a tensor of shape [2]");
  autograd::backward(y, from_vector<double>({1, -1}, {2}));
  CHECK(values(x.grad()) == std::vector<double>{3, -3});
}

TEST_CASE("autograd: saved tensors are freed, and a second backward throws unless retained") {
  Tensor x = from_vector<double>({2}, {1}).set_requires_grad(true);
  Tensor y = ops::sum(ops::exp(x));
  autograd::backward(y, Tensor(), /*retain_graph=*/true);
  autograd::backward(y);
  CHECK(values(x.grad())[0] == doctest::Approx(2 * std::exp(2.0)));
  const std::string message = test::error_of([&] { autograd::backward(y); });
  CHECK(message.find("a second time: its saved tensors were freed") != std::string::npos);
}

TEST_CASE("autograd: NoGradGuard and detach stop recording") {
  Tensor x = ones({2}, kFloat64).set_requires_grad(true);
  {
    autograd::NoGradGuard guard;
    CHECK(!(x * 2.0).requires_grad());
  }
  CHECK((x * 2.0).requires_grad());
  CHECK(!x.detach().requires_grad());
  CHECK(x.detach().storage() == x.storage());
  CHECK(test::error_of([&] { autograd::backward(ops::sum(x.detach())); }) ==
        "backward: the tensor does not require grad and has no grad_fn");
  Tensor y = x * 2.0;
  CHECK(test::error_of([&] { y.set_requires_grad(false); }) ==
        "set_requires_grad: only leaf tensors can be flagged; use detach() first");
}

TEST_CASE("autograd: a branch that gets no gradient still lets the rest run") {
  Tensor a = from_vector<double>({1, 2}, {2}).set_requires_grad(true);
  Tensor b = from_vector<double>({3, 4}, {2}).set_requires_grad(true);
  // max over dim picks one element: the other gets zero, and b flows through an unrelated path.
  Tensor y = ops::max(a) + ops::sum(b * a);
  autograd::backward(y);
  CHECK(values(a.grad()) == std::vector<double>{3, 5});
  CHECK(values(b.grad()) == std::vector<double>{1, 2});
}

TEST_CASE("autograd: a diamond graph sums both paths once") {
  Tensor x = from_vector<double>({0.5}, {1}).set_requires_grad(true);
  Tensor h = ops::tanh(x);
  Tensor y = ops::sum(h * h + ops::sigmoid(h));
  autograd::backward(y);
  const double t = std::tanh(0.5), s = 1 / (1 + std::exp(-t));
  CHECK(values(x.grad())[0] == doctest::Approx((2 * t + s * (1 - s)) * (1 - t * t)).epsilon(1e-12));
}

TEST_CASE("autograd: joins are summed in place only into buffers nothing else holds") {
  // add's backward hands the same gradient to both inputs, and view's backward returns an alias:
  // summing into either in place would corrupt the other path. Expected values by hand.
  Tensor x = from_vector<double>({1, 2, 3, 4}, {4}).set_requires_grad(true);
  Tensor a = x * 2.0;                        // reached by three paths below
  Tensor shared = a + a;                     // add: one gradient object for both inputs
  Tensor aliased = ops::view(a, {2, 2});     // view: the gradient is a reshape of the incoming one
  Tensor y = ops::sum(shared * 3.0) + ops::sum(ops::view(aliased, {4}) * x);
  autograd::backward(y);
  // dy/da = 3 + 3 + x; dy/dx = 2 * dy/da + a = 2 * (6 + x) + 2x
  CHECK(values(x.grad()) == std::vector<double>{16, 20, 24, 28});
  // The seed given by the caller is never written into.
  Tensor z = from_vector<double>({1, 2}, {2}).set_requires_grad(true);
  Tensor seed = from_vector<double>({1, 1}, {2});
  Tensor w = z * 1.0;
  autograd::backward(w + w, seed);
  CHECK(values(seed) == std::vector<double>{1, 1});
  CHECK(values(z.grad()) == std::vector<double>{2, 2});
}

TEST_CASE("autograd: the backward profile counts each op's calls and the engine's own sums") {
  Tensor x = from_vector<double>({0.5, 1.5}, {2}).set_requires_grad(true);
  Tensor h = ops::exp(x);
  Tensor y = ops::sum(h * h) + ops::sum(ops::tanh(h));
  autograd::reset_backward_profile();
  autograd::set_backward_profiling(true);
  autograd::backward(y);
  autograd::set_backward_profiling(false);
  std::map<std::string, int64_t> calls;
  double total = 0;
  for (const auto& op : autograd::backward_profile()) {
    calls[op.op] = op.calls;
    CHECK(op.ms >= 0);
    total += op.ms;
  }
  CHECK(calls["exp"] == 1);
  CHECK(calls["mul"] == 1);
  CHECK(calls["tanh"] == 1);
  CHECK(calls["sum"] == 2);
  CHECK(calls["add"] == 1);
  // h feeds mul (twice: one gradient per operand) and tanh: two sums into its buffer; x's gradient is
  // one fresh tensor taken by the leaf.
  CHECK(calls["(sum of incoming gradients)"] == 2);
  CHECK(calls["(accumulate into .grad)"] == 1);
  const auto sorted = autograd::backward_profile();
  for (size_t i = 1; i < sorted.size(); ++i) CHECK(sorted[i - 1].ms >= sorted[i].ms);
  // Off: nothing more is recorded; reset clears.
  autograd::backward(ops::sum(ops::exp(x)));
  CHECK(autograd::backward_profile().size() == calls.size());
  autograd::reset_backward_profile();
  CHECK(autograd::backward_profile().empty());
  CHECK(total > 0);
}

TEST_CASE("autograd: the backward profile attributes the products' arithmetic to their ops") {
  Tensor a = from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3}).set_requires_grad(true);
  Tensor b = from_vector<double>({1, 0, 0, 1, 1, 1}, {3, 2}).set_requires_grad(true);
  Tensor y = ops::sum(ops::exp(ops::matmul(a, b)));
  autograd::reset_backward_profile();
  autograd::set_backward_profiling(true);
  autograd::backward(y);
  autograd::set_backward_profiling(false);
  std::map<std::string, int64_t> flops;
  for (const auto& op : autograd::backward_profile()) flops[op.op] = op.flops;
  CHECK(flops.at("matmul") == 2 * (2 * 2 * 3 * 2));  // dA [2, 3] and dB [3, 2], each 2 x 3 x 2 multiply-adds
  CHECK(flops.at("exp") == 0);
  CHECK(flops.at("sum") == 0);
  autograd::reset_backward_profile();
}
