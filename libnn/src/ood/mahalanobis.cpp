// The Mahalanobis out-of-distribution detector (see nn/ood.h). Float64 throughout, with Eigen.
#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <limits>

#include "nn/error.h"
#include "nn/ood.h"

namespace nn::ood {
namespace {

using Matrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

Matrix to_matrix(const Tensor& t, const char* what) {
  NN_CHECK(t.defined() && t.dim() == 2, "MahalanobisDetector: ", what, " must be a matrix (N, D)");
  const std::vector<double> v = t.to(Device::cpu()).to(DType::f64).contiguous().to_vector<double>();
  Matrix m(t.size(0), t.size(1));
  std::copy(v.begin(), v.end(), m.data());
  return m;
}

Tensor to_tensor(const Matrix& m) {
  return from_vector(std::vector<double>(m.data(), m.data() + m.size()), {m.rows(), m.cols()});
}

}  // namespace

MahalanobisDetector::MahalanobisDetector(const Tensor& means, const Tensor& precision) {
  const Matrix mu = to_matrix(means, "means"), p = to_matrix(precision, "precision");
  NN_CHECK(mu.rows() >= 1 && mu.cols() >= 1, "MahalanobisDetector: empty means");
  NN_CHECK(p.rows() == mu.cols() && p.cols() == mu.cols(), "MahalanobisDetector: the precision is ", p.rows(), "x",
           p.cols(), ", the means have ", mu.cols(), " features");
  NN_CHECK(mu.allFinite() && p.allFinite(), "MahalanobisDetector: non-finite means or precision");
  means_ = to_tensor(mu);
  precision_ = to_tensor(p);
}

MahalanobisDetector MahalanobisDetector::fit(const Tensor& features, const std::vector<int64_t>& labels,
                                             int64_t classes, double shrinkage) {
  const Matrix x = to_matrix(features, "features");
  const int64_t n = x.rows(), d = x.cols();
  NN_CHECK(static_cast<int64_t>(labels.size()) == n, "MahalanobisDetector::fit: ", n, " feature rows, ", labels.size(),
           " labels");
  NN_CHECK(classes >= 1 && n > classes, "MahalanobisDetector::fit: needs more samples (", n, ") than classes (",
           classes, ")");
  NN_CHECK(shrinkage >= 0 && shrinkage < 1, "MahalanobisDetector::fit: shrinkage must be in [0, 1), got ", shrinkage);
  NN_CHECK(x.allFinite(), "MahalanobisDetector::fit: non-finite features");
  Matrix mu = Matrix::Zero(classes, d);
  std::vector<int64_t> count(static_cast<size_t>(classes), 0);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = labels[static_cast<size_t>(i)];
    NN_CHECK(c >= 0 && c < classes, "MahalanobisDetector::fit: labels[", i, "] = ", c, " is not in [0, ", classes, ")");
    mu.row(c) += x.row(i);
    ++count[static_cast<size_t>(c)];
  }
  for (int64_t c = 0; c < classes; ++c) {
    NN_CHECK(count[static_cast<size_t>(c)] > 0, "MahalanobisDetector::fit: class ", c, " has no sample");
    mu.row(c) /= static_cast<double>(count[static_cast<size_t>(c)]);
  }
  Matrix centred = x;
  for (int64_t i = 0; i < n; ++i) centred.row(i) -= mu.row(labels[static_cast<size_t>(i)]);
  Matrix cov = (centred.transpose() * centred) / static_cast<double>(n - classes);
  const double scale = cov.trace() / static_cast<double>(d);
  NN_CHECK(scale > 0, "MahalanobisDetector::fit: the features do not vary within the classes");
  cov *= (1.0 - shrinkage);
  cov.diagonal().array() += shrinkage * scale;
  // The inverse through the eigen-decomposition of the symmetric matrix; eigenvalues below a
  // relative floor (rounding, shrinkage 0) are raised to it.
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(cov);
  NN_CHECK(eig.info() == Eigen::Success, "MahalanobisDetector::fit: the covariance's eigen-decomposition failed");
  Eigen::VectorXd lambda = eig.eigenvalues();
  const double floor = std::max(lambda.maxCoeff() * 1e-12, std::numeric_limits<double>::min());
  for (Eigen::Index i = 0; i < lambda.size(); ++i) lambda[i] = 1.0 / std::max(lambda[i], floor);
  const Eigen::MatrixXd& v = eig.eigenvectors();
  Matrix precision = v * lambda.asDiagonal() * v.transpose();
  precision = (precision + precision.transpose()) / 2;  // exactly symmetric
  return MahalanobisDetector(to_tensor(mu), to_tensor(precision));
}

std::vector<double> MahalanobisDetector::distances(const Tensor& features) const {
  NN_CHECK(fitted(), "MahalanobisDetector: not fitted");
  const Matrix x = to_matrix(features, "features");
  NN_CHECK(x.cols() == dim(), "MahalanobisDetector: features have ", x.cols(), " values, the detector ", dim());
  const Matrix mu = to_matrix(means_, "means"), p = to_matrix(precision_, "precision");
  std::vector<double> out(static_cast<size_t>(x.rows()));
  for (Eigen::Index i = 0; i < x.rows(); ++i) {
    double best = std::numeric_limits<double>::infinity();
    for (Eigen::Index c = 0; c < mu.rows(); ++c) {
      const Eigen::RowVectorXd delta = x.row(i) - mu.row(c);
      best = std::min(best, (delta * p * delta.transpose())(0, 0));
    }
    // A non-finite feature is as far from the training data as it gets.
    out[static_cast<size_t>(i)] = std::isfinite(best) ? best : std::numeric_limits<double>::infinity();
  }
  return out;
}

double quantile(std::vector<double> values, double q) {
  NN_CHECK(!values.empty(), "quantile: no values");
  NN_CHECK(q >= 0 && q <= 1, "quantile: q must be in [0, 1], got ", q);
  for (double v : values) NN_CHECK(std::isfinite(v), "quantile: non-finite value ", v);
  std::sort(values.begin(), values.end());
  const double pos = q * static_cast<double>(values.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(values.size() - 1, lo + 1);
  return values[lo] + (pos - static_cast<double>(lo)) * (values[hi] - values[lo]);
}

}  // namespace nn::ood
