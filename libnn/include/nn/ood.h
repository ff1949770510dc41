// Out-of-distribution detection in a network's feature space.
//
// MahalanobisDetector is the detector of Lee, Lee, Lee and Shin, "A Simple Unified Framework for
// Detecting Out-of-Distribution Samples and Adversarial Attacks" (NeurIPS 2018): the features of
// the training images are modelled as one Gaussian per class with a covariance shared by the
// classes; an input's score is its squared Mahalanobis distance to the nearest class mean. Inputs
// unlike every training class lie far from all the means in the directions the training features
// hardly vary in, which a classifier's logit ignores.
//
//   nn::ood::MahalanobisDetector d = nn::ood::MahalanobisDetector::fit(train_features, labels, 2);
//   double limit = nn::ood::quantile(d.distances(held_out_features), 0.995);  // keeps 99.5% in
//   bool refused = d.distances(x_features)[0] > limit;
//
// Features are (N, D) rows, any floating dtype, on the CPU; the statistics are float64.
#pragma once

#include <cstdint>
#include <vector>

#include "nn/tensor.h"

namespace nn::ood {

class MahalanobisDetector {
 public:
  MahalanobisDetector() = default;
  // From a fitted state: means (C, D) and precision (D, D), float64 or convertible. Throws
  // nn::Error on mismatched shapes or non-finite values.
  MahalanobisDetector(const Tensor& means, const Tensor& precision);

  // Fits the class means and the shared covariance S (pooled within-class, divided by N - C) of
  // features (N, D) with labels[i] in [0, classes). Every class needs a sample and N > classes.
  // The covariance is shrunk towards a multiple of the identity, (1 - s) S + s (trace(S) / D) I
  // with s = shrinkage in [0, 1), so directions in which the training features never vary (a dead
  // ReLU channel) have a finite, large precision instead of an infinite one.
  static MahalanobisDetector fit(const Tensor& features, const std::vector<int64_t>& labels, int64_t classes,
                                 double shrinkage = 0.01);

  // The squared Mahalanobis distance of each row of features (N, D) to the nearest class mean.
  std::vector<double> distances(const Tensor& features) const;

  const Tensor& means() const { return means_; }          // (C, D) float64
  const Tensor& precision() const { return precision_; }  // (D, D) float64, the shrunk covariance's inverse
  int64_t classes() const { return means_.defined() ? means_.size(0) : 0; }
  int64_t dim() const { return means_.defined() ? means_.size(1) : 0; }
  bool fitted() const { return means_.defined(); }

 private:
  Tensor means_, precision_;
};

// The q-quantile of values (q in [0, 1]) with linear interpolation between order statistics
// (numpy's default). Needs a non-empty vector of finite values.
double quantile(std::vector<double> values, double q);

}  // namespace nn::ood
