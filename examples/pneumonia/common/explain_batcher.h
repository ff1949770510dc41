// Request batching for pneumonia-serve: requests that arrive together share one forward and one
// Grad-CAM backward pass per ensemble member.
//
// Worker threads (one per request) call explain(input), which queues the input and waits. Each of
// the batching threads (one per copy of the model) takes everything queued - up to max_batch
// inputs, without waiting for more - runs PneumoniaModel::explain_batch on it, and hands each
// worker its own result (an image's logits depend on that image only: eval mode). While a batch
// runs, the next one gathers, so under load the batches grow and the per-image cost falls; a lone
// request waits for nothing.
//
// THREADS. With one model, a batch runs on every compute thread. With K copies (the server's
// --batchers; a copy per thread, since explain_batch installs forward hooks on the model it runs),
// a batch of one image while no other batching thread is busy - a lone request - still gets every
// compute thread, and any other batch gets compute_threads / K of them: the batching threads then
// run side by side without OpenMP barriers between them, each on its own core, and the workers'
// decoding and encoding fill the gaps (docs/web_app.md, "Measured"). The models are only read.
#pragma once

#include <nn/explain.h>
#include <nn/tensor.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

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
  // One batching thread per model (copies of one model); compute_threads as in THREADS above
  // (0: nn's global setting).
  ExplainBatcher(const std::vector<PneumoniaModel*>& models, int64_t max_batch, int compute_threads);
  ~ExplainBatcher();  // finishes the batches in flight, fails what is still queued, joins the threads
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
  void run(PneumoniaModel& model);

  const std::vector<PneumoniaModel*> models_;
  const int64_t max_batch_;
  const int compute_threads_;
  const int share_;  // a batch's threads while other batching threads may run
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Item*> queue_;
  bool stopping_ = false;
  int busy_ = 0;  // batching threads running a batch
  int64_t images_ = 0, batches_ = 0;
  std::vector<std::thread> threads_;  // last: they use everything above
};

}  // namespace pneumonia
