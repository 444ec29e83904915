// HiResCAM of a detection (see hires_cam.h): ResNet's stage outputs become leaves, the FPN and the
// box head run on the box with grad mode on, and the finest stage that received a gradient is the
// one whose FPN level RoIAlign pooled from.
#include "maskrcnn/hires_cam.h"

#include "autograd/engine.h"
#include "autograd/node.h"
#include "ops/ops.h"
#include "tensor/error.h"

namespace mrcnn::detection {

namespace {

// requires_grad off on a module's trainable parameters while alive, back on after (also on an error).
class FrozenParameters {
 public:
  explicit FrozenParameters(nn::Module& module) : trainable_(module.trainable_parameters()) {
    for (Tensor& p : trainable_) p.set_requires_grad(false);
  }
  ~FrozenParameters() {
    for (Tensor& p : trainable_) p.set_requires_grad(true);
  }
  FrozenParameters(const FrozenParameters&) = delete;
  FrozenParameters& operator=(const FrozenParameters&) = delete;

 private:
  std::vector<Tensor> trainable_;
};

}  // namespace

Tensor box_class_logit(MaskRCNN& model, const std::vector<Tensor>& features, const Tensor& box, int64_t label,
                       ImageSize image_size) {
  check(box.dim() == 1 && box.size(0) == 4, "box_class_logit: a box is 4 numbers, got ", shape_str(box.sizes()));
  check(label >= 0 && label < model.config().num_classes, "box_class_logit: label ", label, " outside 0..",
        model.config().num_classes - 1);
  // On the host whatever the model's device: the pooler builds its RoIs there (poolers.cpp).
  const Tensor proposal = ops::reshape(ops::to(ops::to(box, kFloat32), kCPU), {1, 4});
  const auto [class_logits, box_regression] = model.roi_heads->box_predictions(features, {proposal}, {image_size});
  return ops::select(ops::select(class_logits, 0, 0), 0, label);
}

namespace {

// One box's map from the body's stage outputs (computed once, without a graph).
HiResCam cam_of_box(MaskRCNN& model, const ImageList& images, const std::vector<Tensor>& body_stages,
                    const Tensor& box, int64_t label) {
  // Fresh leaves sharing the stages' storage: each box's backward fills its own gradients.
  std::vector<Tensor> stages;
  for (const Tensor& stage : body_stages) stages.push_back(stage.detach().set_requires_grad(true));
  const ImageSize size = images.image_sizes[0];
  Tensor logit;
  {
    // Only the stages' gradient is wanted: the parameters' .grad (a caller's training state) stay as they are.
    const FrozenParameters frozen(model);
    logit = box_class_logit(model, model.backbone->fpn->forward(stages), box, label, size);
    autograd::backward(logit);
  }
  HiResCam cam;
  cam.logit = ops::to(logit.detach(), kCPU).item<float>();
  // P_k is built from C_k and every coarser stage (the top-down path): the finest stage with a
  // gradient is the box's.
  Tensor grad;
  for (size_t k = 0; k < stages.size() && !grad.defined(); ++k)
    if (stages[k].grad().defined() && ops::max(ops::abs(stages[k].grad())).item<float>() > 0)
      grad = stages[k].grad(), cam.stage = static_cast<int64_t>(k);
  autograd::NoGradGuard no_grad;
  const Tensor feature = stages[static_cast<size_t>(cam.stage)].detach();
  if (!grad.defined()) grad = zeros(feature.sizes(), feature.dtype(), feature.device());
  cam.contribution = ops::sum(ops::mul(ops::select(feature, 0, 0), ops::select(grad, 0, 0)), {0});  // [h, w]
  const Tensor padded = ops::interpolate(ops::unsqueeze(ops::unsqueeze(ops::relu(cam.contribution), 0), 0),
                                         {images.tensors.size(2), images.tensors.size(3)}, ops::InterpolateMode::Bilinear);
  const Tensor map =
      ops::contiguous(ops::narrow(ops::narrow(ops::select(ops::select(padded, 0, 0), 0, 0), 0, 0, size.first), 1, 0, size.second));
  const float peak = ops::max(map).item<float>();
  cam.map = ops::to(peak > 0 ? ops::div(map, static_cast<double>(peak)) : map, kCPU);
  cam.contribution = ops::to(cam.contribution, kCPU);
  return cam;
}

}  // namespace

std::vector<HiResCam> hires_cams(MaskRCNN& model, const ImageList& images, const Tensor& boxes,
                                 const std::vector<int64_t>& labels) {
  check(!model.is_training() && autograd::grad_enabled(), "hires_cam: needs the model in eval mode and grad mode on");
  check(images.image_sizes.size() == 1, "hires_cam: expects one image, got ", images.image_sizes.size());
  check(boxes.dim() == 2 && boxes.size(1) == 4, "hires_cam: boxes are [N, 4], got ", shape_str(boxes.sizes()));
  check(static_cast<int64_t>(labels.size()) == boxes.size(0), "hires_cam: ", boxes.size(0), " boxes but ",
        labels.size(), " labels");
  std::vector<HiResCam> cams;
  if (labels.empty()) return cams;
  std::vector<Tensor> stages;
  {
    autograd::NoGradGuard no_grad;
    stages = model.backbone->body->forward(images.tensors);
  }
  for (int64_t b = 0; b < boxes.size(0); ++b)
    cams.push_back(cam_of_box(model, images, stages, ops::select(boxes, 0, b), labels[static_cast<size_t>(b)]));
  return cams;
}

HiResCam hires_cam(MaskRCNN& model, const ImageList& images, const Tensor& box, int64_t label) {
  check(box.dim() == 1 && box.size(0) == 4, "hires_cam: a box is 4 numbers, got ", shape_str(box.sizes()));
  return hires_cams(model, images, ops::reshape(box, {1, 4}), {label})[0];
}

}  // namespace mrcnn::detection
