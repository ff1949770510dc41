// Request batching for pneumonia-serve (explain_batcher.h).
#include "explain_batcher.h"

#include <nn/error.h>
#include <nn/ops.h>

#include <exception>
#include <vector>

namespace pneumonia {

ExplainBatcher::ExplainBatcher(PneumoniaModel& model, int64_t max_batch)
    : model_(model), max_batch_(max_batch), thread_([this] { run(); }) {
  NN_CHECK(max_batch >= 1, "ExplainBatcher: max_batch must be positive, got ", max_batch);
}

ExplainBatcher::~ExplainBatcher() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
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

void ExplainBatcher::run() {
  while (true) {
    std::vector<Item*> batch;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, nothing left
      while (!queue_.empty() && static_cast<int64_t>(batch.size()) < max_batch_) {
        batch.push_back(queue_.front());
        queue_.pop_front();
      }
    }
    try {
      std::vector<nn::Tensor> inputs;
      for (Item* item : batch) inputs.push_back(item->input);
      std::vector<Assessment> assessed;
      std::vector<nn::explain::GradCam> cams = model_.explain_batch(nn::concat(inputs, 0), &assessed);
      {
        std::lock_guard<std::mutex> lock(mutex_);
        images_ += static_cast<int64_t>(batch.size());
        ++batches_;
      }
      for (size_t i = 0; i < batch.size(); ++i) batch[i]->done.set_value({std::move(cams[i]), std::move(assessed[i])});
    } catch (...) {
      for (Item* item : batch) item->done.set_exception(std::current_exception());
    }
  }
}

}  // namespace pneumonia
