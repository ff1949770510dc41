// Request batching for pneumonia-serve: requests that arrive together share one forward and one
// Grad-CAM backward pass per ensemble member.
//
// Worker threads (one per request) call explain(input), which queues the input and waits. One
// batching thread takes everything queued - up to max_batch inputs, without waiting for more -
// runs PneumoniaModel::explain_batch on all of it with every compute thread, and hands each worker
// its own result (an image's logits depend on that image only: eval mode). While a batch runs, the
// next one gathers, so under load the batches grow and the per-image cost falls; a lone request
// waits for nothing. The model is only read.
#pragma once

#include <nn/explain.h>
#include <nn/tensor.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <future>
#include <mutex>
#include <thread>

#include "pneumonia_model.h"

namespace pneumonia {

// Grad-CAM of one input and the model's assessment of it (the gate's feature stage, the logit and
// probability), from the same forward pass.
struct Explained {
  nn::explain::GradCam cam;
  Assessment assessment;
};

class ExplainBatcher {
 public:
  ExplainBatcher(PneumoniaModel& model, int64_t max_batch);
  ~ExplainBatcher();  // finishes the batch in flight, fails what is still queued, joins the thread
  ExplainBatcher(const ExplainBatcher&) = delete;
  ExplainBatcher& operator=(const ExplainBatcher&) = delete;

  // Grad-CAM, the mean logit and the gate's verdict for one preprocessed input (1, 3, S, S) on the
  // model's device; blocks until its batch has run. Errors of the batch (nn::Error) are rethrown
  // here.
  Explained explain(const nn::Tensor& input);

  // Images explained and batches run so far (for the health endpoint and tests).
  int64_t images() const;
  int64_t batches() const;

 private:
  struct Item {
    nn::Tensor input;
    std::promise<Explained> done;
  };
  void run();

  PneumoniaModel& model_;
  const int64_t max_batch_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Item*> queue_;
  bool stopping_ = false;
  int64_t images_ = 0, batches_ = 0;
  std::thread thread_;  // last: it uses everything above
};

}  // namespace pneumonia
