// The out-of-distribution gate (ood_gate.h, docs/ood_gate.md).
#include "ood_gate.h"

#include <nn/error.h>
#include <nn/ops.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace pneumonia {

using json = nlohmann::json;

InputStats input_stats(const nn::data::Image& im) {
  InputStats s;
  NN_CHECK(im.height > 0 && im.width > 0 && im.channels >= 1, "input_stats: empty image");
  s.aspect = static_cast<double>(im.width) / static_cast<double>(im.height);
  const int64_t n = im.height * im.width, ch = im.channels;
  const bool colour = ch >= 3;
  // Gray levels as nn::data::to_grayscale computes them would need a copy; the statistics only
  // need a histogram (1024 bins) and moments.
  std::vector<int64_t> hist(1024, 0);
  double sum = 0, sum_sq = 0, chroma = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float* p = &im.pixels[static_cast<size_t>(i * ch)];
    double g;
    if (colour) {
      g = 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
      chroma += std::max({p[0], p[1], p[2]}) - std::min({p[0], p[1], p[2]});
    } else {
      g = p[0];
    }
    g = std::clamp(g, 0.0, 1.0);
    sum += g;
    sum_sq += g * g;
    ++hist[static_cast<size_t>(std::min(1023.0, g * 1024.0))];
  }
  const double dn = static_cast<double>(n);
  s.colour = chroma / dn;
  const double mean = sum / dn;
  s.contrast = std::sqrt(std::max(0.0, sum_sq / dn - mean * mean));
  auto percentile = [&](double q) {
    const double target = q * dn;
    int64_t acc = 0;
    for (size_t b = 0; b < hist.size(); ++b) {
      acc += hist[b];
      if (static_cast<double>(acc) >= target) return (static_cast<double>(b) + 0.5) / 1024.0;
    }
    return 1.0;
  };
  s.dynamic_range = percentile(0.99) - percentile(0.01);
  return s;
}

json InputLimits::to_json() const {
  return {{"max_colour", max_colour},   {"min_dynamic_range", min_dynamic_range}, {"min_contrast", min_contrast},
          {"min_aspect", min_aspect}, {"max_aspect", max_aspect}};
}

InputLimits InputLimits::from_json(const json& j) {
  InputLimits l;
  auto number = [&](const char* key, double& field) {
    NN_CHECK(j.contains(key) && j[key].is_number(), "the gate's input limits lack the number '", key, "'");
    field = j[key].get<double>();
    NN_CHECK(std::isfinite(field) && field >= 0, "the gate's input limit '", key, "' is not a finite number >= 0");
  };
  number("max_colour", l.max_colour);
  number("min_dynamic_range", l.min_dynamic_range);
  number("min_contrast", l.min_contrast);
  number("min_aspect", l.min_aspect);
  number("max_aspect", l.max_aspect);
  NN_CHECK(l.min_aspect < l.max_aspect, "the gate's aspect limits are empty");
  return l;
}

InputLimits fit_input_limits(const std::vector<const nn::data::Image*>& images) {
  InputLimits l;
  std::vector<double> ranges, contrasts;
  for (const nn::data::Image* im : images) {
    if (im == nullptr || im->height == 0) continue;
    const InputStats s = input_stats(*im);
    ranges.push_back(s.dynamic_range);
    contrasts.push_back(s.contrast);
  }
  if (ranges.empty()) return l;
  l.min_dynamic_range = 0.5 * nn::ood::quantile(ranges, 0.001);
  l.min_contrast = 0.5 * nn::ood::quantile(contrasts, 0.001);
  return l;
}

std::string check_input(const InputStats& s, const InputLimits& l) {
  char buf[256];
  if (s.colour > l.max_colour) {
    std::snprintf(buf, sizeof buf, "a colour image (colourfulness %.3f, limit %.3f): a chest X-ray is gray", s.colour,
                  l.max_colour);
    return buf;
  }
  if (s.dynamic_range < l.min_dynamic_range || s.contrast < l.min_contrast) {
    std::snprintf(buf, sizeof buf,
                  "a blank or nearly uniform image (gray-level range %.3f, limit %.3f; contrast %.3f, limit %.3f)",
                  s.dynamic_range, l.min_dynamic_range, s.contrast, l.min_contrast);
    return buf;
  }
  if (s.aspect < l.min_aspect || s.aspect > l.max_aspect) {
    std::snprintf(buf, sizeof buf, "an aspect ratio of %.2f (width / height), outside %.2f-%.2f", s.aspect, l.min_aspect,
                  l.max_aspect);
    return buf;
  }
  return "";
}

std::vector<double> OodGate::scores(const std::vector<std::vector<double>>& distances) const {
  NN_CHECK(distances.size() == members.size(), "OodGate::scores: ", distances.size(), " members' distances, the gate has ",
           members.size());
  NN_CHECK(!members.empty(), "OodGate::scores: the gate has no feature stage");
  std::vector<double> out(distances[0].size(), 0.0);
  for (size_t k = 0; k < members.size(); ++k) {
    NN_CHECK(distances[k].size() == out.size(), "OodGate::scores: members scored different image counts");
    for (size_t i = 0; i < out.size(); ++i) out[i] += distances[k][i] / members[k].limit;
  }
  for (double& v : out) v /= static_cast<double>(members.size());
  return out;
}

std::string feature_refusal_reason(double score) {
  char buf[200];
  std::snprintf(buf, sizeof buf,
                "does not look like the chest X-rays the model was trained on (feature distance %.2f times the "
                "limit)",
                score);
  return buf;
}

nn::Tensor pooled_features(const nn::Tensor& activations) {
  NN_CHECK(activations.dim() == 4, "pooled_features: expected (N, C, H, W)");
  return nn::mean(activations, {2, 3});
}

namespace {
std::string tensor_name(size_t k, const char* what) { return "ood.member" + std::to_string(k) + "." + what; }
}  // namespace

void OodGate::add_to(std::map<std::string, std::string>& metadata,
                     std::vector<std::pair<std::string, nn::Tensor>>& tensors) const {
  json limits = json::array();
  for (const FeatureGate& m : members) limits.push_back(m.limit);
  metadata["ood_gate"] = json{{"input", input.to_json()}, {"quantile", quantile}, {"layer", layer}, {"limits", limits}}.dump();
  for (size_t k = 0; k < members.size(); ++k) {
    tensors.emplace_back(tensor_name(k, "means"), members[k].detector.means());
    tensors.emplace_back(tensor_name(k, "precision"), members[k].detector.precision());
  }
}

OodGate OodGate::from_file(const std::map<std::string, std::string>& metadata,
                           const std::vector<std::pair<std::string, nn::Tensor>>& tensors, int member_count) {
  OodGate gate;
  auto it = metadata.find("ood_gate");
  if (it == metadata.end()) return gate;
  json j;
  try {
    j = json::parse(it->second);
  } catch (const json::exception&) {
    NN_CHECK(false, "the model file's metadata 'ood_gate' is not JSON");
  }
  NN_CHECK(j.is_object() && j.contains("input") && j.contains("limits") && j["limits"].is_array(),
           "the model file's metadata 'ood_gate' lacks 'input' or 'limits'");
  gate.input = InputLimits::from_json(j["input"]);
  if (j.contains("quantile") && j["quantile"].is_number()) gate.quantile = j["quantile"].get<double>();
  if (j.contains("layer") && j["layer"].is_string()) gate.layer = j["layer"].get<std::string>();
  const json& limits = j["limits"];
  if (limits.empty()) return gate;
  NN_CHECK(static_cast<int>(limits.size()) == member_count, "the gate has ", limits.size(), " feature limits, the model ",
           member_count, " members");
  auto find = [&](const std::string& name) {
    for (const auto& [n, t] : tensors)
      if (n == name) return t;
    NN_CHECK(false, "the model file lacks the gate's tensor '", name, "'");
    return nn::Tensor();
  };
  for (size_t k = 0; k < limits.size(); ++k) {
    NN_CHECK(limits[k].is_number() && std::isfinite(limits[k].get<double>()) && limits[k].get<double>() > 0,
             "the gate's limit of member ", k, " is not a positive number");
    FeatureGate f;
    f.limit = limits[k].get<double>();
    f.detector = nn::ood::MahalanobisDetector(find(tensor_name(k, "means")), find(tensor_name(k, "precision")));
    gate.members.push_back(std::move(f));
  }
  return gate;
}

}  // namespace pneumonia
