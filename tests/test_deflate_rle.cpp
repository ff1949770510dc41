// nn's run-length + Huffman deflate (data/deflate_rle.h, encode_png's level 1), checked by zlib's
// inflate, which refuses over-subscribed and incomplete codes and a wrong Adler-32: every stream
// must inflate to exactly the input. Suite DeflateRle.
#include <gtest/gtest.h>
#include <nn/data/image.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <queue>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "data/deflate_rle.h"

namespace {

using Bytes = std::vector<uint8_t>;

// zlib's inflate of a whole stream; fails the test unless it ends exactly at the stream's end.
Bytes inflate_all(const Bytes& stream, size_t expected_size) {
  Bytes out(expected_size + 1);
  uLongf out_size = static_cast<uLongf>(out.size());
  uLong in_size = static_cast<uLong>(stream.size());
  const int z = uncompress2(out.data(), &out_size, stream.data(), &in_size);
  EXPECT_EQ(z, Z_OK) << "zlib refused the stream";
  EXPECT_EQ(in_size, stream.size()) << "bytes after the stream's end";
  out.resize(out_size);
  return out;
}

void expect_round_trip(const Bytes& data, const std::string& what) {
  SCOPED_TRACE(what);
  const Bytes stream = nn::data::detail::deflate_rle(data.data(), data.size());
  ASSERT_GE(stream.size(), 2u + 4u);
  EXPECT_EQ(stream[0], 0x78);
  EXPECT_EQ((stream[0] * 256 + stream[1]) % 31, 0);
  EXPECT_EQ(inflate_all(stream, data.size()), data);
}

TEST(DeflateRle, RandomBytesRoundTrip) {
  std::mt19937 rng(11);
  for (size_t n : {size_t{0}, size_t{1}, size_t{2}, size_t{3}, size_t{7}, size_t{8}, size_t{9}, size_t{100}, size_t{65537}}) {
    Bytes data(n);
    for (uint8_t& b : data) b = static_cast<uint8_t>(rng());
    expect_round_trip(data, "random, " + std::to_string(n) + " bytes");
  }
}

TEST(DeflateRle, EveryRunLengthAndEveryPositionInAWord) {
  // Runs of 1..600 bytes (over the 258 of one match) of alternating values, then the same after
  // 1..9 leading bytes, so that runs start and end at every offset of the 8-byte scan.
  for (int lead = 0; lead < 9; ++lead) {
    Bytes data(static_cast<size_t>(lead), 7);
    for (int run = 1; run <= 600; ++run) data.insert(data.end(), static_cast<size_t>(run), static_cast<uint8_t>(run % 3 == 0 ? 0 : run));
    expect_round_trip(data, "runs after " + std::to_string(lead) + " leading bytes");
  }
  // Runs near the end of the input (the scan's tail, fewer than 8 bytes left).
  for (int tail = 1; tail <= 12; ++tail) {
    Bytes data = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    data.insert(data.end(), static_cast<size_t>(tail), 9);
    expect_round_trip(data, "a run of " + std::to_string(tail) + " at the end");
  }
  expect_round_trip(Bytes(1 << 20, 0), "1 MiB of zeros");
}

TEST(DeflateRle, SeveralBlocks) {
  // Inputs over one block (256 KiB of input each): random bytes, random bytes with runs, and runs
  // across every block boundary (a block's first match refers to the last byte of the one before).
  std::mt19937 rng(21);
  Bytes data(700000);
  for (uint8_t& b : data) b = static_cast<uint8_t>(rng());
  expect_round_trip(data, "random, 3 blocks");
  for (size_t i = 0; i < data.size(); i += 1 + rng() % 1000) {
    const size_t run = std::min<size_t>(data.size() - i, rng() % 600);
    std::fill(data.begin() + static_cast<std::ptrdiff_t>(i), data.begin() + static_cast<std::ptrdiff_t>(i + run), static_cast<uint8_t>(rng()));
    i += run;
  }
  for (size_t edge = size_t{1} << 18; edge < data.size(); edge += size_t{1} << 18)
    std::fill(data.begin() + static_cast<std::ptrdiff_t>(edge - 300), data.begin() + static_cast<std::ptrdiff_t>(edge + 300), uint8_t{77});
  expect_round_trip(data, "runs, 3 blocks");
}

TEST(DeflateRle, SkewedCountsAreLimitedTo15BitCodes) {
  // Byte k occurs fib(k + 1) times, never twice in a row (no matches): an unlimited Huffman code
  // would be 25 bits deep, so the length limit (counts halved until the tree fits) must act.
  std::vector<std::pair<uint64_t, int>> left;
  uint64_t a = 1, b = 1;
  for (int k = 0; k < 25; ++k) {
    left.emplace_back(a, k);
    const uint64_t next = a + b;
    a = b;
    b = next;
  }
  std::priority_queue<std::pair<uint64_t, int>> heap(left.begin(), left.end());
  Bytes data;
  int previous = -1;
  while (!heap.empty()) {
    auto top = heap.top();
    heap.pop();
    if (top.second == previous) {  // take the runner-up instead, then put the top back
      ASSERT_FALSE(heap.empty());
      auto second = heap.top();
      heap.pop();
      heap.push(top);
      top = second;
    }
    data.push_back(static_cast<uint8_t>(top.second));
    previous = top.second;
    if (--top.first > 0) heap.push(top);
  }
  ASSERT_GT(data.size(), 100000u);
  expect_round_trip(data, "Fibonacci counts");
}

TEST(DeflateRle, CompressesRunsAndSmallAlphabets) {
  // A run-length coder must shrink long runs to almost nothing and a 4-symbol alphabet to a little
  // over 2 bits per byte (the match symbols share the literals' code: measured 2.22).
  EXPECT_LT(nn::data::detail::deflate_rle(Bytes(100000, 42).data(), 100000).size(), 1000u);
  std::mt19937 rng(3);
  Bytes four(100000);
  for (uint8_t& v : four) v = static_cast<uint8_t>(rng() % 4 * 60);
  const size_t packed = nn::data::detail::deflate_rle(four.data(), four.size()).size();
  EXPECT_LT(packed, 100000u * 5 / 2 / 8);  // 2.5 bits per byte
  EXPECT_GT(packed, 100000u * 3 / 2 / 8);  // 1.5: matches of 3+ equal bytes are rare (1/64)
}

TEST(DeflateRle, EncodePngLevelOneIsLosslessAndSmall) {
  // A smooth RGB image with flat areas (like the server's heatmaps): level 1 decodes to the same
  // levels and is far smaller than the raw samples.
  const int64_t h = 96, w = 128;
  nn::data::Image im{h, w, 3, {}};
  im.pixels.resize(static_cast<size_t>(h * w * 3));
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x)
      for (int64_t k = 0; k < 3; ++k) {
        const float wave = 0.5f + 0.4f * std::sin(static_cast<float>(x) / (6.0f + 3 * k)) * std::cos(static_cast<float>(y) / 9.0f);
        im.pixels[static_cast<size_t>((y * w + x) * 3 + k)] = x < 40 ? 0.2f : std::round(255.0f * wave) / 255.0f;
      }
  for (int level : {0, 1, 2, 6}) {
    const Bytes png = nn::data::encode_png(im, level);
    const nn::data::Image back = nn::data::decode_image(png.data(), png.size());
    ASSERT_EQ(back.height, h);
    ASSERT_EQ(back.width, w);
    ASSERT_EQ(back.channels, 3);
    for (size_t i = 0; i < im.pixels.size(); ++i)
      ASSERT_NEAR(back.pixels[i], im.pixels[i], 1e-6f) << "level " << level << ", sample " << i;
    if (level > 0) {
      EXPECT_LT(png.size(), static_cast<size_t>(h * w * 3) / 2) << "level " << level;
    }
  }
}

}  // namespace
