// DataLoader and cache_images (nn/data/loader.h).
//
// Workers claim sample positions of the current epoch in order, up to `prefetch` batches past the
// one the consumer waits for; each stores its sample's tensor (or failure) in the batch's slot, and
// the worker finishing a batch's last sample stacks it. Everything shared is under one mutex; the
// workers sleep on `work_cv` (nothing to claim), the consumer on `ready_cv` (its batch not ready).
// A generation number identifies the epoch a claimed sample belongs to, so start_epoch() can
// abandon an epoch without waiting: late results of the old generation are dropped.
#include "nn/data/loader.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <mutex>
#include <thread>

#include "nn/error.h"

namespace nn::data {
namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Library code called from a worker (resize, Eigen, ...) must not open OpenMP teams: the model
// uses the cores. max-active-levels is a per-thread setting (the calling thread's data
// environment), so this affects only the worker.
void make_this_thread_single_threaded() { omp_set_max_active_levels(0); }

std::string describe(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return ex.what();
  } catch (...) {
    return "unknown exception";
  }
}

struct SampleResult {
  int64_t index = -1;        // the sample
  Tensor tensor;             // (C, H, W) f32 contiguous CPU when ok
  std::string failure;       // "path: reason" when the sample could not be read/transformed
  std::string invalid;       // a transform output that cannot be batched (a programming error)
};

}  // namespace

uint64_t sample_seed(uint64_t seed, int64_t epoch, int64_t sample_index, int64_t repeat) {
  uint64_t h = splitmix64(seed ^ 0x6E6E2D64617461ull);  // "nn-data"
  h = splitmix64(h ^ static_cast<uint64_t>(epoch));
  h = splitmix64(h ^ static_cast<uint64_t>(sample_index));
  return splitmix64(h ^ static_cast<uint64_t>(repeat));
}

struct DataLoader::State {
  // Fixed at construction.
  std::vector<Sample> samples;
  std::vector<int64_t> indices;
  std::vector<int64_t> labels;  // of every sample
  SampleTransform transform;
  LoaderOptions options;
  std::function<Image(const Sample&)> load;
  int64_t num_batches = 0;
  int64_t positions = 0;  // samples per epoch (num_batches * batch_size with drop_last)

  struct Slot {
    int64_t first = 0, count = 0;  // positions [first, first + count) of the order
    std::vector<SampleResult> results;
    int64_t remaining = 0;
    bool ready = false;
    Batch batch;
    std::exception_ptr error;
  };

  mutable std::mutex mutex;
  std::condition_variable work_cv, ready_cv;
  bool stop = false;
  bool active = false;
  uint64_t generation = 0;
  int64_t epoch = 0;
  std::vector<int64_t> order;
  std::vector<int64_t> repeats;
  std::vector<std::shared_ptr<Slot>> slots;
  int64_t next_position = 0;  // next position a worker claims
  int64_t deliver = 0;        // next batch next() returns
  std::vector<std::string> pending_failed;  // of skipped (all-failed) batches
  std::vector<std::string> epoch_failed;
  std::vector<std::thread> threads;

  int64_t claim_limit() const {
    return std::min(positions, (deliver + options.prefetch) * options.batch_size);
  }

  SampleResult process(int64_t index, uint64_t gen_seed) const {
    SampleResult r;
    r.index = index;
    const Sample& sample = samples[static_cast<size_t>(index)];
    try {
      Image image = load ? load(sample) : load_image(sample.path);
      Generator gen(gen_seed);
      Tensor t = transform(image, gen);
      if (!t.defined()) {
        r.invalid = "the transform returned an undefined tensor for '" + sample.path + "'";
      } else if (t.dim() != 3) {
        r.invalid = "the transform must return a (C, H, W) tensor, got " + shape_str(t.shape()) +
                    " for '" + sample.path + "'";
      } else {
        r.tensor = t.detach().cpu().to(DType::f32).contiguous();
      }
    } catch (...) {
      r.failure = sample.path + ": " + describe(std::current_exception());
      r.tensor = Tensor();
    }
    return r;
  }

  // Stacks a complete slot into its Batch (or records why it cannot be). Never throws. Runs
  // without the lock: reads only the slot and what never changes after construction.
  void assemble(Slot& slot) const {
    try {
      Batch batch;
      std::vector<const Tensor*> ok;
      for (int64_t k = 0; k < slot.count; ++k) {
        SampleResult& r = slot.results[static_cast<size_t>(k)];
        NN_CHECK(r.invalid.empty(), "DataLoader: ", r.invalid);
        if (!r.failure.empty()) {
          batch.failed.push_back(r.failure);
        } else {
          batch.indices.push_back(r.index);
          ok.push_back(&r.tensor);
        }
      }
      if (!ok.empty()) {
        const Shape& shape = ok[0]->shape();
        const int64_t n = static_cast<int64_t>(ok.size()), each = shape_numel(shape);
        batch.images = empty({n, shape[0], shape[1], shape[2]}, DType::f32);
        float* dst = batch.images.data<float>();
        std::vector<int64_t> labels_vec;
        for (int64_t k = 0; k < n; ++k) {
          NN_CHECK(ok[k]->shape() == shape, "DataLoader: the transform returned tensors of different shapes in one batch: ",
                   shape_str(shape), " for sample ", batch.indices[0], ", ", shape_str(ok[k]->shape()),
                   " for sample ", batch.indices[k], " ('", samples[batch.indices[k]].path, "')");
          if (each > 0) std::memcpy(dst + k * each, ok[k]->data<float>(), sizeof(float) * each);
          labels_vec.push_back(labels[static_cast<size_t>(batch.indices[k])]);
        }
        batch.labels = from_vector<int64_t>(labels_vec, {n});
      }
      slot.batch = std::move(batch);
    } catch (...) {
      slot.error = std::current_exception();
    }
    slot.results.clear();
    slot.results.shrink_to_fit();
  }

  void worker() {
    make_this_thread_single_threaded();
    std::unique_lock<std::mutex> lock(mutex);
    while (true) {
      work_cv.wait(lock, [&] { return stop || (active && next_position < claim_limit()); });
      if (stop) return;
      const int64_t position = next_position++;
      const uint64_t gen_id = generation;
      const int64_t index = order[static_cast<size_t>(position)];
      const uint64_t seed = sample_seed(options.seed, epoch, index, repeats[static_cast<size_t>(position)]);
      std::shared_ptr<Slot> slot = slots[static_cast<size_t>(position / options.batch_size)];
      lock.unlock();

      SampleResult result = process(index, seed);

      lock.lock();
      if (gen_id != generation) continue;  // the epoch was abandoned meanwhile
      slot->results[static_cast<size_t>(position - slot->first)] = std::move(result);
      if (--slot->remaining > 0) continue;
      lock.unlock();
      assemble(*slot);  // this worker is the only one touching the slot now
      lock.lock();
      if (gen_id != generation) continue;
      slot->ready = true;
      ready_cv.notify_all();
    }
  }
};

DataLoader::DataLoader(std::vector<Sample> samples, std::vector<int64_t> indices,
                       SampleTransform transform, LoaderOptions options,
                       std::function<Image(const Sample&)> load)
    : state_(std::make_unique<State>()) {
  NN_CHECK(options.batch_size >= 1, "DataLoader: batch_size must be >= 1, got ", options.batch_size);
  NN_CHECK(options.workers >= 1, "DataLoader: workers must be >= 1, got ", options.workers);
  NN_CHECK(options.prefetch >= 1, "DataLoader: prefetch must be >= 1, got ", options.prefetch);
  NN_CHECK(static_cast<bool>(transform), "DataLoader: no transform given");
  const int64_t n_samples = static_cast<int64_t>(samples.size());
  for (size_t i = 0; i < indices.size(); ++i)
    NN_CHECK(indices[i] >= 0 && indices[i] < n_samples, "DataLoader: indices[", i, "] = ", indices[i],
             " is outside [0, ", n_samples, ")");
  State& s = *state_;
  s.samples = std::move(samples);
  s.indices = std::move(indices);
  s.transform = std::move(transform);
  s.options = options;
  s.load = std::move(load);
  s.labels.reserve(s.samples.size());
  for (const Sample& sample : s.samples) s.labels.push_back(sample.label);
  const int64_t n = static_cast<int64_t>(s.indices.size()), bs = options.batch_size;
  s.num_batches = options.drop_last ? n / bs : (n + bs - 1) / bs;
  s.positions = options.drop_last ? s.num_batches * bs : n;
  try {
    for (int w = 0; w < options.workers; ++w) s.threads.emplace_back([&s] { s.worker(); });
  } catch (...) {
    {
      std::lock_guard<std::mutex> lock(s.mutex);
      s.stop = true;
    }
    s.work_cv.notify_all();
    for (std::thread& t : s.threads) t.join();
    throw;
  }
}

DataLoader::~DataLoader() {
  State& s = *state_;
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    s.stop = true;
  }
  s.work_cv.notify_all();
  s.ready_cv.notify_all();
  for (std::thread& t : s.threads)
    if (t.joinable()) t.join();
}

void DataLoader::start_epoch(int64_t epoch) {
  State& s = *state_;
  NN_CHECK(epoch >= 0, "DataLoader::start_epoch: epoch must be >= 0, got ", epoch);
  std::vector<int64_t> order =
      epoch_order(s.indices, s.labels, s.options.seed, epoch, s.options.shuffle, s.options.balanced);
  std::vector<int64_t> repeats(order.size(), 0);
  {
    std::vector<int64_t> seen(s.samples.size(), 0);
    for (size_t p = 0; p < order.size(); ++p) repeats[p] = seen[static_cast<size_t>(order[p])]++;
  }
  const int64_t bs = s.options.batch_size;
  std::vector<std::shared_ptr<State::Slot>> slots(static_cast<size_t>(s.num_batches));
  for (int64_t b = 0; b < s.num_batches; ++b) {
    auto slot = std::make_shared<State::Slot>();
    slot->first = b * bs;
    slot->count = std::min(bs, s.positions - b * bs);
    slot->results.resize(static_cast<size_t>(slot->count));
    slot->remaining = slot->count;
    slots[static_cast<size_t>(b)] = std::move(slot);
  }
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    ++s.generation;
    s.epoch = epoch;
    s.order = std::move(order);
    s.repeats = std::move(repeats);
    s.slots = std::move(slots);
    s.next_position = 0;
    s.deliver = 0;
    s.pending_failed.clear();
    s.epoch_failed.clear();
    s.active = true;
  }
  s.work_cv.notify_all();
}

std::optional<Batch> DataLoader::next() {
  State& s = *state_;
  std::unique_lock<std::mutex> lock(s.mutex);
  if (!s.active) return std::nullopt;
  while (s.deliver < s.num_batches) {
    std::shared_ptr<State::Slot> slot = s.slots[static_cast<size_t>(s.deliver)];
    s.ready_cv.wait(lock, [&] { return slot->ready || s.stop; });
    NN_CHECK(!s.stop, "DataLoader::next: the loader is being destroyed");
    s.slots[static_cast<size_t>(s.deliver)].reset();
    ++s.deliver;
    s.work_cv.notify_all();  // the prefetch window moved
    if (slot->error) {
      lock.unlock();
      std::rethrow_exception(slot->error);
    }
    Batch& batch = slot->batch;
    s.epoch_failed.insert(s.epoch_failed.end(), batch.failed.begin(), batch.failed.end());
    if (batch.indices.empty()) {
      s.pending_failed.insert(s.pending_failed.end(), batch.failed.begin(), batch.failed.end());
      continue;
    }
    if (!s.pending_failed.empty()) {
      batch.failed.insert(batch.failed.begin(), s.pending_failed.begin(), s.pending_failed.end());
      s.pending_failed.clear();
    }
    return std::move(batch);
  }
  return std::nullopt;
}

int64_t DataLoader::batches_per_epoch() const { return state_->num_batches; }
int64_t DataLoader::size() const { return state_->positions; }
const LoaderOptions& DataLoader::options() const { return state_->options; }

std::vector<std::string> DataLoader::failures() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->epoch_failed;
}

ImageCache cache_images(const std::vector<Sample>& samples,
                        const std::function<Image(const std::string& path)>& prepare, int workers) {
  NN_CHECK(workers >= 1, "cache_images: workers must be >= 1, got ", workers);
  NN_CHECK(static_cast<bool>(prepare), "cache_images: no prepare function given");
  const size_t n = samples.size();
  std::vector<Image> images(n);
  std::vector<std::string> errors(n);
  std::atomic<size_t> next{0};
  auto work = [&] {
    make_this_thread_single_threaded();
    for (size_t i = next++; i < n; i = next++) {
      try {
        images[i] = prepare(samples[i].path);
      } catch (...) {
        images[i] = Image();
        errors[i] = samples[i].path + ": " + describe(std::current_exception());
      }
    }
  };
  std::vector<std::thread> threads;
  const size_t count = std::min<size_t>(static_cast<size_t>(workers), std::max<size_t>(n, 1));
  try {
    for (size_t w = 0; w < count; ++w) threads.emplace_back(work);
  } catch (...) {
    next = n;  // the started threads stop at their current sample
    for (std::thread& t : threads) t.join();
    throw;
  }
  for (std::thread& t : threads) t.join();
  ImageCache cache;
  cache.images = std::move(images);
  for (std::string& e : errors)
    if (!e.empty()) cache.failed.push_back(std::move(e));
  return cache;
}

}  // namespace nn::data
