// Builds a small VGG11 from the installed nn::models, runs it on a random batch and checks the
// logits' shape and that Grad-CAM finds its usual layer. Exit code 1 on a mismatch.
#include <nn/explain.h>
#include <nn/models/vgg.h>
#include <nn/nn.h>

#include <cstdio>

int main() {
  nn::models::VGGOptions o;
  o.depth = 11;
  o.num_classes = 3;
  o.width_multiplier = 1.0 / 16;
  o.input_size = 32;
  nn::Generator gen(1);
  nn::models::VGG model(o, gen);
  model.eval();
  nn::Tensor logits = model(nn::randn({2, 3, 32, 32}, gen));
  const std::string layer = nn::models::vgg_cam_layer(model);
  nn::explain::GradCam cam = nn::explain::grad_cam(model, nn::randn({1, 3, 32, 32}, gen), layer);
  std::printf("VGG11 logits %s, Grad-CAM at %s: %s\n", nn::shape_str(logits.shape()).c_str(), layer.c_str(),
              nn::shape_str(cam.heatmap.shape()).c_str());
  const bool ok = logits.shape() == nn::Shape{2, 3} && layer == "features.19" && cam.heatmap.shape() == nn::Shape{32, 32};
  return ok ? 0 : 1;
}
