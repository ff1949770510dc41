// deflate_rle (data/deflate_rle.h): a zlib stream with run-length matches and dynamic Huffman
// blocks, one per kBlockBytes of input.
//
// Per block, two passes over its data. The first cuts it into tokens: a byte equal to the byte
// before it that starts a run of 3..258 such bytes becomes one match (length code, distance 1:
// "repeat the byte before"), every other byte a literal; it counts the symbols as it goes. Huffman code lengths
// (at most 15 bits) are then built from the counts, and the second pass writes the block header
// (RFC 1951 3.2.7: the code lengths, themselves run-length coded with symbols 16/17/18 and
// Huffman coded in at most 7 bits) and each token's code, 64 bits at a time.
//
// Length limits: when a Huffman tree is deeper than the limit, every non-zero count is halved
// (rounding up to at least 1) and the tree rebuilt; counts that all reach 1 give a balanced tree
// of depth <= 9 for 286 symbols, so this ends. Huffman trees are full, so every code is complete,
// as zlib's inflate requires. The distance code has two codes of one bit (distances 1 and 2;
// only distance 1 is used): complete too.
#include "data/deflate_rle.h"

#include <zlib.h>  // adler32

#include <algorithm>
#include <array>
#include <cstring>
#include <memory>
#include <utility>

#include "nn/error.h"

namespace nn::data::detail {
namespace {

constexpr int kLitLenSymbols = 286;  // 0-255 literals, 256 end of block, 257-285 match lengths
constexpr int kEndOfBlock = 256;
constexpr int kMaxRun = 258, kMinRun = 3;
// Input bytes per deflate block: each block has Huffman codes of its own (fitted to that part of
// the data), and the token buffer stays small whatever the input's size.
constexpr size_t kBlockBytes = size_t{1} << 18;

// Match lengths 3..258: length symbol 257 + k covers kLengthBase[k] .. + 2^kLengthExtra[k] - 1.
constexpr std::array<uint16_t, 29> kLengthBase = {3,  4,  5,  6,  7,  8,  9,  10, 11,  13,  15,  17,  19,  23, 27,
                                                  31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
constexpr std::array<uint8_t, 29> kLengthExtra = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                                  2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
// The order in which the code-length code's lengths are stored (RFC 1951 3.2.7).
constexpr std::array<uint8_t, 19> kCodeLengthOrder = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};

// length_index[len] = k, the length symbol 257 + k of a match of len bytes.
const std::array<uint8_t, kMaxRun + 1>& length_index() {
  static const std::array<uint8_t, kMaxRun + 1> table = [] {
    std::array<uint8_t, kMaxRun + 1> t{};
    for (int k = 0; k < 28; ++k)
      for (int len = kLengthBase[k]; len < kLengthBase[k] + (1 << kLengthExtra[k]) && len <= kMaxRun; ++len)
        t[len] = static_cast<uint8_t>(k);
    t[kMaxRun] = 28;  // 258 has its own symbol (285), not 284 with extra bits 31
    return t;
  }();
  return table;
}

// Huffman code lengths, each <= limit, for counts[0, n) (a zero count: no code, length 0). At
// least two counts must be non-zero. The symbols sorted by count once, the tree comes from two
// queues (Huffman's linear method: merged nodes are made in order of weight); ties take the
// leaf first and then the lower symbol, so the output is deterministic.
std::vector<uint8_t> huffman_lengths(std::vector<uint32_t> counts, int limit) {
  const int n = static_cast<int>(counts.size());
  std::vector<uint8_t> lengths(static_cast<size_t>(n), 0);
  for (;;) {
    std::vector<std::pair<uint32_t, int>> leaves;  // (count, symbol)
    for (int s = 0; s < n; ++s)
      if (counts[static_cast<size_t>(s)] > 0) leaves.emplace_back(counts[static_cast<size_t>(s)], s);
    NN_ASSERT(leaves.size() >= 2, "huffman_lengths needs two symbols");
    std::sort(leaves.begin(), leaves.end());
    const size_t m = leaves.size();
    // Nodes 0..m-1: the leaves in sorted order; m..2m-2: the merged nodes, root last.
    std::vector<uint64_t> weight(2 * m - 1);
    std::vector<size_t> parent(2 * m - 1, 0);
    for (size_t i = 0; i < m; ++i) weight[i] = leaves[i].first;
    size_t next_leaf = 0, next_merged = m;
    auto take = [&](size_t made) {  // the lighter of the two queues' fronts
      if (next_leaf < m && (next_merged >= made || weight[next_leaf] <= weight[next_merged])) return next_leaf++;
      return next_merged++;
    };
    for (size_t made = m; made < 2 * m - 1; ++made) {
      const size_t a = take(made), b = take(made);
      weight[made] = weight[a] + weight[b];
      parent[a] = parent[b] = made;
    }
    std::vector<int> depth(2 * m - 1, 0);
    int deepest = 0;
    for (size_t v = 2 * m - 2; v-- > 0;) {
      depth[v] = depth[parent[v]] + 1;
      if (v < m) deepest = std::max(deepest, depth[v]);
    }
    if (deepest <= limit) {
      for (size_t i = 0; i < m; ++i) lengths[static_cast<size_t>(leaves[i].second)] = static_cast<uint8_t>(depth[i]);
      return lengths;
    }
    for (uint32_t& c : counts)
      if (c > 0) c = (c >> 1) | 1;
  }
}

// Canonical codes (RFC 1951 3.2.2) of the lengths, bit-reversed for a least-significant-bit-first
// stream.
std::vector<uint16_t> canonical_codes(const std::vector<uint8_t>& lengths) {
  std::array<uint16_t, 16> count{}, next{};
  for (uint8_t l : lengths)
    if (l > 0) ++count[l];
  uint16_t code = 0;
  for (int bits = 1; bits < 16; ++bits) {
    code = static_cast<uint16_t>((code + count[static_cast<size_t>(bits - 1)]) << 1);
    next[static_cast<size_t>(bits)] = code;
  }
  std::vector<uint16_t> codes(lengths.size(), 0);
  for (size_t s = 0; s < lengths.size(); ++s) {
    const int l = lengths[s];
    if (l == 0) continue;
    uint16_t c = next[static_cast<size_t>(l)]++, reversed = 0;
    for (int b = 0; b < l; ++b, c >>= 1) reversed = static_cast<uint16_t>((reversed << 1) | (c & 1));
    codes[s] = reversed;
  }
  return codes;
}

// Where a stream of bits stands between blocks: the next byte of `out`, and the bits not yet
// stored.
struct BitState {
  size_t pos;
  uint64_t acc = 0;
  int used = 0;
};

// Bits into `out`, least significant first, from a BitState on: each put stores the whole 64-bit
// accumulator and advances by the bytes it completed, no branch. Made per block (a local whose
// address never escapes, so its fields stay in registers while bytes are stored), after reserve()
// has made room for the block and 8 bytes of slack.
class BitWriter {
 public:
  BitWriter(std::vector<uint8_t>& out, const BitState& s, uint64_t bits) : acc_(s.acc), used_(s.used) {
    const size_t need = s.pos + static_cast<size_t>((bits + static_cast<uint64_t>(s.used) + 7) / 8) + 8;
    if (out.size() < need) out.resize(std::max(need, out.size() + out.size() / 2));
    base_ = out.data();
    p_ = base_ + s.pos;
  }
  void put(uint64_t value, int bits) {  // bits <= 56
    acc_ |= value << used_;
    used_ += bits;
    for (int b = 0; b < 8; ++b) p_[b] = static_cast<uint8_t>(acc_ >> (8 * b));
    p_ += used_ >> 3;
    acc_ >>= used_ & ~7;  // used_ < 64: at most 7 left + 21 per token
    used_ &= 7;
  }
  BitState state() const { return {static_cast<size_t>(p_ - base_), acc_, used_}; }

 private:
  uint8_t* base_;
  uint8_t* p_;
  uint64_t acc_;
  int used_;
};

// A token: a literal byte or end of block (symbol < 257), or a match (length symbol 257..285 and
// its extra bits).
struct Token {
  uint16_t symbol;
  uint16_t extra;
};

// One entry of the run-length coded code lengths: a symbol 0..18 and its extra bits' value.
struct LengthToken {
  uint8_t symbol, extra;
};

std::vector<LengthToken> run_length_code(const std::vector<uint8_t>& seq) {
  std::vector<LengthToken> out;
  for (size_t i = 0; i < seq.size();) {
    const uint8_t v = seq[i];
    size_t run = 1;
    while (i + run < seq.size() && seq[i + run] == v) ++run;
    i += run;
    if (v == 0) {
      for (; run >= 11; run -= std::min<size_t>(run, 138))
        out.push_back({18, static_cast<uint8_t>(std::min<size_t>(run, 138) - 11)});
      if (run >= 3) {
        out.push_back({17, static_cast<uint8_t>(run - 3)});
        run = 0;
      }
      for (; run > 0; --run) out.push_back({0, 0});
    } else {
      out.push_back({v, 0});
      --run;
      for (; run >= 3; run -= std::min<size_t>(run, 6)) out.push_back({16, static_cast<uint8_t>(std::min<size_t>(run, 6) - 3)});
      for (; run > 0; --run) out.push_back({v, 0});
    }
  }
  return out;
}

int code_length_extra_bits(int symbol) { return symbol == 16 ? 2 : symbol == 17 ? 3 : symbol == 18 ? 7 : 0; }

// One deflate block (final or not) for data[begin, end) into w; `tokens` holds end - begin + 1.
// Matches refer back into earlier blocks (distance 1) but never run past `end`.
void write_block(const uint8_t* data, size_t begin, size_t end, bool final, Token* tokens, std::vector<uint8_t>& out,
                 BitState& state) {
  // Pass 1: tokens and their counts. Eight bytes at a time: d = the bytes XOR the bytes one
  // before; where d has three zero bytes in a row a run of at least 3 starts, and up to the first
  // such place every byte is a literal (the common case costs one branch per 6 bytes).
  const auto& index = length_index();
  size_t count = 0;
  std::vector<uint32_t> counts(kLitLenSymbols, 0);
  auto literal = [&](uint8_t b) {
    tokens[count++] = {b, 0};
    ++counts[b];
  };
  constexpr uint64_t kLow7 = 0x7f7f7f7f7f7f7f7fULL;
  size_t i = begin;
  if (i == 0 && end > 0) literal(data[i++]);  // the stream's first byte has nothing before it
  while (i < end) {
    if (i + 8 <= end) {
      uint64_t x, y;
      std::memcpy(&x, data + i, 8);
      std::memcpy(&y, data + i - 1, 8);
      const uint64_t d = x ^ y;
      // The high bit of each zero byte of d (exact: no carries between bytes).
      const uint64_t zero = ~(((d & kLow7) + kLow7) | d | kLow7);
      const uint64_t starts = zero & (zero >> 8) & (zero >> 16);  // bytes 0..5 are valid
      const int first = starts == 0 ? 6 : __builtin_ctzll(starts) / 8;
      if (first >= 6) {
        for (int k = 0; k < 6; ++k) literal(data[i + k]);
        i += 6;
        continue;
      }
      for (int k = 0; k < first; ++k) literal(data[i + k]);
      i += first;
    } else if (!(i + 3 <= end && data[i] == data[i - 1] && data[i + 1] == data[i - 1] && data[i + 2] == data[i - 1])) {
      literal(data[i++]);
      continue;
    }
    // A run of >= 3 bytes equal to data[i - 1] starts at i.
    const uint8_t v = data[i - 1];
    const size_t limit = std::min<size_t>(kMaxRun, end - i);
    size_t run = kMinRun;
    while (run < limit && data[i + run] == v) ++run;
    const int k = index[run];
    tokens[count++] = {static_cast<uint16_t>(257 + k), static_cast<uint16_t>(run - kLengthBase[static_cast<size_t>(k)])};
    ++counts[static_cast<size_t>(257 + k)];
    i += run;
  }
  tokens[count++] = {kEndOfBlock, 0};
  ++counts[kEndOfBlock];
  // Two symbols at least, so that the code is a tree (an empty input: literal 0 gets a code too).
  if (end == begin) counts[0] = 1;

  const std::vector<uint8_t> litlen_lengths = huffman_lengths(counts, 15);
  const std::vector<uint16_t> litlen_codes = canonical_codes(litlen_lengths);
  int hlit = kLitLenSymbols;
  while (hlit > 257 && litlen_lengths[static_cast<size_t>(hlit - 1)] == 0) --hlit;
  const int hdist = 2;  // distance codes 0 (distance 1) and 1, one bit each

  // The code lengths of both alphabets, one sequence, run-length coded; then their own code.
  std::vector<uint8_t> seq(litlen_lengths.begin(), litlen_lengths.begin() + hlit);
  seq.push_back(1);
  seq.push_back(1);
  const std::vector<LengthToken> length_tokens = run_length_code(seq);
  std::vector<uint32_t> length_counts(19, 0);
  for (const LengthToken& t : length_tokens) ++length_counts[t.symbol];
  if (std::count_if(length_counts.begin(), length_counts.end(), [](uint32_t c) { return c > 0; }) < 2)
    ++length_counts[length_tokens.front().symbol == 0 ? 1 : 0];  // a second symbol: a complete code
  const std::vector<uint8_t> cl_lengths = huffman_lengths(length_counts, 7);
  const std::vector<uint16_t> cl_codes = canonical_codes(cl_lengths);
  int hclen = 19;
  while (hclen > 4 && cl_lengths[kCodeLengthOrder[static_cast<size_t>(hclen - 1)]] == 0) --hclen;

  // The block's exact size in bits, to make room once.
  uint64_t bits = 3 + 5 + 5 + 4 + 3 * static_cast<uint64_t>(hclen);
  for (const LengthToken& t : length_tokens) bits += cl_lengths[t.symbol] + static_cast<uint64_t>(code_length_extra_bits(t.symbol));
  for (int s = 0; s < kLitLenSymbols; ++s) {
    uint64_t per = litlen_lengths[static_cast<size_t>(s)];
    if (s >= 257) per += kLengthExtra[static_cast<size_t>(s - 257)] + 1;  // + the 1-bit distance code
    bits += per * counts[static_cast<size_t>(s)];
  }
  BitWriter w(out, state, bits);

  // Pass 2: the block's header and its tokens.
  w.put(final ? 1 : 0, 1);
  w.put(2, 2);  // dynamic Huffman codes
  w.put(static_cast<uint32_t>(hlit - 257), 5);
  w.put(static_cast<uint32_t>(hdist - 1), 5);
  w.put(static_cast<uint32_t>(hclen - 4), 4);
  for (int i = 0; i < hclen; ++i) w.put(cl_lengths[kCodeLengthOrder[static_cast<size_t>(i)]], 3);
  for (const LengthToken& t : length_tokens) {
    w.put(cl_codes[t.symbol], cl_lengths[t.symbol]);
    if (const int e = code_length_extra_bits(t.symbol)) w.put(t.extra, e);
  }
  // Per symbol: its code and length; a match's code is followed by its extra bits and then
  // distance code 0 (one bit, 0: distance 1), so its length grows by extra bits + 1.
  std::array<uint8_t, kLitLenSymbols> bits_of{};
  for (int s = 0; s < kLitLenSymbols; ++s) {
    bits_of[static_cast<size_t>(s)] = litlen_lengths[static_cast<size_t>(s)];
    if (s > kEndOfBlock) bits_of[static_cast<size_t>(s)] += kLengthExtra[static_cast<size_t>(s - 257)] + 1;
  }
  for (size_t k = 0; k < count; ++k) {
    const Token t = tokens[k];
    w.put(litlen_codes[t.symbol] | (static_cast<uint32_t>(t.extra) << litlen_lengths[t.symbol]), bits_of[t.symbol]);
  }
  state = w.state();
}

}  // namespace

std::vector<uint8_t> deflate_rle(const uint8_t* data, size_t n) {
  std::vector<uint8_t> out(64);
  out[0] = 0x78;  // deflate, 32 KiB window
  out[1] = 0x01;  // fastest; (0x78 * 256 + 0x01) % 31 == 0
  BitState state{2};
  const std::unique_ptr<Token[]> tokens(new Token[std::min(n, kBlockBytes) + 1]);  // one per byte at most, + end of block
  size_t begin = 0;
  do {
    const size_t end = std::min(n, begin + kBlockBytes);
    write_block(data, begin, end, end == n, tokens.get(), out, state);
    begin = end;
  } while (begin < n);
  size_t size = state.pos;
  if (state.used > 0) out[size++] = static_cast<uint8_t>(state.acc);  // the last byte, padded with zeros
  out.resize(size + 4);
  const uLong adler = adler32_z(adler32_z(0L, Z_NULL, 0), data, n);
  for (int b = 0; b < 4; ++b) out[size + static_cast<size_t>(b)] = static_cast<uint8_t>(adler >> (8 * (3 - b)));
  return out;
}

}  // namespace nn::data::detail
