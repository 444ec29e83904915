// The backward engine: accumulation into leaves, graph release, NoGradGuard, detach, shape checks.
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
