// A multithreaded, deterministic batch loader (std::thread workers, condition variables) and an
// in-memory image cache.
//
// Determinism: an epoch's order is epoch_order(indices, labels, seed, epoch, shuffle, balanced) and
// each sample's transform gets its own Generator seeded from (seed, epoch, sample index[, repeat]),
// so the batches are bitwise identical whatever the number of workers and the thread scheduling.
// Failures: an exception while loading or transforming a sample never leaves its thread; the sample
// is left out of its batch and reported in Batch::failed as "path: reason"; a batch whose samples
// all failed is skipped (its failures are reported with the next batch returned, and by
// DataLoader::failures()).
// Threads: each worker runs with OpenMP nesting disabled (omp_set_max_active_levels(0) on that
// thread), so library code called by a transform (resize, ...) stays single-threaded there and
// the model keeps the cores.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "nn/data/dataset.h"
#include "nn/data/image.h"
#include "nn/generator.h"
#include "nn/tensor.h"

namespace nn::data {

struct Batch {
  Tensor images;                    // (N, C, H, W) float32, CPU
  Tensor labels;                    // (N) int64, CPU
  std::vector<int64_t> indices;     // sample indices in this batch, in epoch order
  std::vector<std::string> failed;  // "path: reason" for samples left out because they could not be read
};

struct LoaderOptions {
  int64_t batch_size = 32;
  bool shuffle = true;
  bool balanced = false;   // class-balanced draws with replacement (see epoch_order)
  bool drop_last = false;  // drop the last, smaller batch of an epoch
  int workers = 2;         // decoding threads (>= 1)
  int prefetch = 2;        // batches prepared ahead (>= 1)
  uint64_t seed = 0;
};

// Turns a decoded image into a (C, H, W) tensor (converted to float32 if needed); `gen` is private
// to this sample and epoch (seeded by sample_seed), so the output is the same whatever the thread
// scheduling. It is called from several worker threads at once (so is `load`): both must be
// safe to call concurrently. Every tensor of a batch must have the same shape (a mismatch is an
// error thrown by DataLoader::next()).
using SampleTransform = std::function<Tensor(const Image& image, Generator& gen)>;

// The seed of the Generator a sample's transform gets: a hash of (loader seed, epoch, sample
// index, repeat), repeat = how many times the sample already occurred earlier in the same epoch's
// order (always 0 unless balanced draws repeat it), so repeats get different augmentations.
uint64_t sample_seed(uint64_t seed, int64_t epoch, int64_t sample_index, int64_t repeat = 0);

class DataLoader {
 public:
  // `load` reads a sample (default: load_image(sample.path)); use it e.g. to serve from an
  // in-memory cache. It receives the loader's own copy of the Sample (not an element of the vector
  // passed in), so find cache entries by path (an unordered_map<string, size_t>), not by address. `indices` index `samples` (e.g. Split::train). Errors: an index out of range,
  // no transform, batch_size/workers/prefetch < 1.
  DataLoader(std::vector<Sample> samples, std::vector<int64_t> indices, SampleTransform transform,
             LoaderOptions options, std::function<Image(const Sample&)> load = {});
  ~DataLoader();  // stops and joins the workers (waits only for samples being processed now)
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  // Begins producing batches of this epoch (abandoning the rest of a previous one). epoch >= 0.
  void start_epoch(int64_t epoch);
  // The next batch; nullopt at the end of the epoch (and before the first start_epoch). Blocks
  // while the workers prepare it. Rethrows (as nn::Error) a transform output that cannot form a
  // batch (not 3-D, shapes differing within the batch).
  std::optional<Batch> next();
  int64_t batches_per_epoch() const;
  int64_t size() const;  // samples per epoch (without drop_last: indices.size())
  // "path: reason" of every failed sample in the batches of the current epoch returned or skipped
  // so far, in epoch order.
  std::vector<std::string> failures() const;
  const LoaderOptions& options() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

struct ImageCache {
  std::vector<Image> images;        // in sample order; an empty Image for failures
  std::vector<std::string> failed;  // "path: reason", in sample order
};
// Decodes every sample once with `workers` threads (>= 1, single-threaded each) through `prepare`
// (e.g. load_image + to_grayscale + resize to a base size) and keeps the results in memory.
ImageCache cache_images(const std::vector<Sample>& samples,
                        const std::function<Image(const std::string& path)>& prepare, int workers);

}  // namespace nn::data
