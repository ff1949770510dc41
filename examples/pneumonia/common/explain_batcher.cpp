// Request batching for pneumonia-serve (explain_batcher.h).
#include "explain_batcher.h"

#include <nn/error.h>
#include <nn/ops.h>
#include <nn/parallel.h>

#include <algorithm>
#include <exception>
#include <vector>

namespace pneumonia {

ExplainBatcher::ExplainBatcher(PneumoniaModel& model, int64_t max_batch) : ExplainBatcher({&model}, max_batch, 0) {}

ExplainBatcher::ExplainBatcher(const std::vector<PneumoniaModel*>& models, int64_t max_batch, int compute_threads)
    : models_(models),
      max_batch_(max_batch),
      compute_threads_(compute_threads),
      share_(std::max(1, (compute_threads > 0 ? compute_threads : nn::get_num_threads()) / static_cast<int>(std::max<size_t>(1, models.size())))) {
  NN_CHECK(max_batch >= 1, "ExplainBatcher: max_batch must be positive, got ", max_batch);
  NN_CHECK(!models.empty(), "ExplainBatcher: no model");
  NN_CHECK(compute_threads >= 0, "ExplainBatcher: compute_threads must be >= 0, got ", compute_threads);
  for (PneumoniaModel* m : models) NN_CHECK(m != nullptr, "ExplainBatcher: a null model");
  for (PneumoniaModel* m : models_) threads_.emplace_back([this, m] { run(*m); });
}

ExplainBatcher::~ExplainBatcher() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (std::thread& t : threads_) t.join();
}

Explained ExplainBatcher::explain(const nn::Tensor& input) {
  NN_CHECK(input.defined() && input.dim() == 4 && input.size(0) == 1,
           "ExplainBatcher::explain: expected one input (1, 3, S, S)");
  Item item{input, {}};
  std::future<Explained> result = item.done.get_future();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    NN_CHECK(!stopping_, "the server is stopping");
    queue_.push_back(&item);
  }
  wake_.notify_one();
  return result.get();  // the item lives until its promise is kept
}

int64_t ExplainBatcher::images() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return images_;
}

int64_t ExplainBatcher::batches() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return batches_;
}

void ExplainBatcher::run(PneumoniaModel& model) {
  const int k = static_cast<int>(models_.size());
  while (true) {
    std::vector<Item*> batch;
    bool alone = false;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, nothing left
      while (!queue_.empty() && static_cast<int64_t>(batch.size()) < max_batch_) {
        batch.push_back(queue_.front());
        queue_.pop_front();
      }
      alone = busy_ == 0 && batch.size() == 1 && queue_.empty();
      ++busy_;
    }
    // A lone request gets every compute thread; with other batching threads about, a share.
    nn::set_this_thread_num_threads(k == 1 || alone ? compute_threads_ : share_);
    try {
      std::vector<nn::Tensor> inputs;
      for (Item* item : batch) inputs.push_back(item->input);
      std::vector<Assessment> assessed;
      std::vector<nn::explain::GradCam> cams = model.explain_batch(nn::concat(inputs, 0), &assessed);
      {
        std::lock_guard<std::mutex> lock(mutex_);
        images_ += static_cast<int64_t>(batch.size());
        ++batches_;
        --busy_;
      }
      for (size_t i = 0; i < batch.size(); ++i) batch[i]->done.set_value({std::move(cams[i]), std::move(assessed[i])});
    } catch (...) {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        --busy_;
      }
      for (Item* item : batch) item->done.set_exception(std::current_exception());
    }
  }
}

}  // namespace pneumonia
