// The transforms of Winograd F(4x4, 3x3) (Lavin & Gray 2016), shared by the CPU path
// (cpu/conv_winograd_cpu.cpp) and the CUDA path (kernels/conv_winograd_cuda.cuh). A 4x4 output tile
// Y of a 3x3 filter g over the 6x6 input patch d is
//   Y = A^T [ (G g G^T) (.) (B^T d B) ] A        ((.) elementwise, 36 products instead of 144)
// with the interpolation points 0, +1, -1, +2, -2 and infinity (Lavin's set; 4 + 3 - 1 = 6 points).
// Each 2-D transform is a 1-D transform applied to the columns, then to the rows. The 1-D functions
// below are the matrix products factored to share terms; the static_asserts at the end check each
// against the matrices (on the unit vectors, where the float arithmetic is exact), so the factored
// forms, and with them both backends, cannot drift from the matrices. The CPU's AVX2 forms of
// input_1d, output_1d and output_grad_1d (conv_winograd_cpu.cpp) follow the same factorings.
// The backward passes use the adjoints: A y (4 -> 6) for the output gradient, G^T u (6 -> 3) for
// the weight gradient.
#pragma once

#include <cstdint>

#include "host_device.h"

namespace nn::winograd_transforms {

constexpr int kPoints = 36;  // 6x6 transform points per tile

// The matrices (floats: 1/6, 1/12 and 1/24 rounded as the factored forms below round them).
constexpr float kBT[6][6] = {{4, 0, -5, 0, 1, 0},
                             {0, -4, -4, 1, 1, 0},
                             {0, 4, -4, -1, 1, 0},
                             {0, -2, -1, 2, 1, 0},
                             {0, 2, -1, -2, 1, 0},
                             {0, 4, 0, -5, 0, 1}};
constexpr float kG[6][3] = {{0.25f, 0, 0},
                            {-1.0f / 6, -1.0f / 6, -1.0f / 6},
                            {-1.0f / 6, 1.0f / 6, -1.0f / 6},
                            {1.0f / 24, 1.0f / 12, 1.0f / 6},
                            {1.0f / 24, -1.0f / 12, 1.0f / 6},
                            {0, 0, 1}};
constexpr float kAT[4][6] = {{1, 1, 1, 1, 1, 0},
                             {0, 1, -1, 2, -2, 0},
                             {0, 1, 1, 4, 4, 0},
                             {0, 1, -1, 8, -8, 1}};

// v = B^T d (6 -> 6), v[i] at v[i * stride].
NN_HOST_DEVICE_INLINE constexpr void input_1d(float d0, float d1, float d2, float d3, float d4, float d5, float* v,
                                              int64_t stride) {
  const float a = d4 - 4.0f * d2, b = d3 - 4.0f * d1, c = d4 - d2, e = d3 - d1;
  v[0 * stride] = 4.0f * d0 - 5.0f * d2 + d4;
  v[1 * stride] = a + b;
  v[2 * stride] = a - b;
  v[3 * stride] = c + 2.0f * e;
  v[4 * stride] = c - 2.0f * e;
  v[5 * stride] = 4.0f * d1 - 5.0f * d3 + d5;
}

// u = G g (3 -> 6).
NN_HOST_DEVICE_INLINE constexpr void filter_1d(float g0, float g1, float g2, float* u, int64_t stride) {
  const float e = g0 + g2, f = g0 * (1.0f / 24) + g2 * (1.0f / 6), h = g1 * (1.0f / 12);
  u[0 * stride] = g0 * 0.25f;
  u[1 * stride] = (e + g1) * (-1.0f / 6);
  u[2 * stride] = (e - g1) * (-1.0f / 6);
  u[3 * stride] = f + h;
  u[4 * stride] = f - h;
  u[5 * stride] = g2;
}

// y = A^T m (6 -> 4).
NN_HOST_DEVICE_INLINE constexpr void output_1d(float m0, float m1, float m2, float m3, float m4, float m5, float* y,
                                               int64_t stride) {
  const float a1 = m1 + m2, b1 = m1 - m2, a2 = m3 + m4, b2 = m3 - m4;
  y[0 * stride] = m0 + a1 + a2;
  y[1 * stride] = b1 + 2.0f * b2;
  y[2 * stride] = a1 + 4.0f * a2;
  y[3 * stride] = b1 + 8.0f * b2 + m5;
}

// m = A y (4 -> 6): the adjoint of output_1d.
NN_HOST_DEVICE_INLINE constexpr void output_grad_1d(float y0, float y1, float y2, float y3, float* m,
                                                    int64_t stride) {
  const float even = y0 + y2, odd = y1 + y3, even4 = y0 + 4.0f * y2, odd8 = 2.0f * y1 + 8.0f * y3;
  m[0 * stride] = y0;
  m[1 * stride] = even + odd;
  m[2 * stride] = even - odd;
  m[3 * stride] = even4 + odd8;
  m[4 * stride] = even4 - odd8;
  m[5 * stride] = y3;
}

// g = G^T u (6 -> 3): the adjoint of filter_1d (the CUDA path's weight gradient).
NN_HOST_DEVICE_INLINE constexpr void filter_grad_1d(float u0, float u1, float u2, float u3, float u4, float u5,
                                                    float* g, int64_t stride) {
  const float s12 = u1 + u2, d12 = u1 - u2, s34 = u3 + u4, d34 = u3 - u4;
  g[0 * stride] = u0 * 0.25f - s12 * (1.0f / 6) + s34 * (1.0f / 24);
  g[1 * stride] = -d12 * (1.0f / 6) + d34 * (1.0f / 12);
  g[2 * stride] = -s12 * (1.0f / 6) + s34 * (1.0f / 6) + u5;
}

// The same G^T u with the last row's two 1/6 terms scaled once, (s34 - s12) / 6 (the CPU path's
// weight gradient). It rounds differently from filter_grad_1d in the last bits of g[2]; the two
// backends keep the forms they were validated with.
NN_HOST_DEVICE_INLINE constexpr void filter_grad_1d_factored(float u0, float u1, float u2, float u3, float u4,
                                                             float u5, float* g, int64_t stride) {
  const float s12 = u1 + u2, d12 = u2 - u1, s34 = u3 + u4, d34 = u3 - u4;
  g[0 * stride] = 0.25f * u0 - s12 * (1.0f / 6) + s34 * (1.0f / 24);
  g[1 * stride] = d12 * (1.0f / 6) + d34 * (1.0f / 12);
  g[2 * stride] = (s34 - s12) * (1.0f / 6) + u5;
}

namespace check {

// Whether f maps every unit vector e_j to column j of m (Rows x Cols) or, when `adjoint`, to row j
// of m (the transform by m^T). f(in, out) reads in[0 .. inputs) and writes out[0 .. outputs).
template <int Rows, int Cols, typename F>
constexpr bool maps_unit_vectors(const float (&m)[Rows][Cols], bool adjoint, F f) {
  const int inputs = adjoint ? Rows : Cols, outputs = adjoint ? Cols : Rows;
  for (int j = 0; j < inputs; ++j) {
    float in[6] = {}, out[6] = {};
    in[j] = 1.0f;
    f(in, out);
    for (int i = 0; i < outputs; ++i)
      if (out[i] != (adjoint ? m[j][i] : m[i][j])) return false;
  }
  return true;
}

static_assert(maps_unit_vectors(kBT, false,
                                [](const float* d, float* v) { input_1d(d[0], d[1], d[2], d[3], d[4], d[5], v, 1); }),
              "input_1d must compute B^T d");
static_assert(maps_unit_vectors(kG, false, [](const float* g, float* u) { filter_1d(g[0], g[1], g[2], u, 1); }),
              "filter_1d must compute G g");
static_assert(maps_unit_vectors(kAT, false,
                                [](const float* m, float* y) { output_1d(m[0], m[1], m[2], m[3], m[4], m[5], y, 1); }),
              "output_1d must compute A^T m");
static_assert(maps_unit_vectors(kAT, true,
                                [](const float* y, float* m) { output_grad_1d(y[0], y[1], y[2], y[3], m, 1); }),
              "output_grad_1d must compute A y");
static_assert(maps_unit_vectors(kG, true,
                                [](const float* u, float* g) {
                                  filter_grad_1d(u[0], u[1], u[2], u[3], u[4], u[5], g, 1);
                                }),
              "filter_grad_1d must compute G^T u");
static_assert(maps_unit_vectors(kG, true,
                                [](const float* u, float* g) {
                                  filter_grad_1d_factored(u[0], u[1], u[2], u[3], u[4], u[5], g, 1);
                                }),
              "filter_grad_1d_factored must compute G^T u");

}  // namespace check
}  // namespace nn::winograd_transforms
