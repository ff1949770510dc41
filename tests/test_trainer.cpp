// examples/pneumonia/common/trainer: pneumonia::Trainer driven step by step without the CLI, on a
// small synthetic data set (suite Trainer): the split, an epoch's history row and files, the
// evaluation, resuming from the checkpoint with the same weights, and finish()'s outputs.
#ifdef NN_HAVE_PNEUMONIA_COMMON

#include <gtest/gtest.h>
#include <nn/error.h>
#include <nn/io/safetensors.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "synthetic_xray.h"
#include "trainer.h"

namespace {

namespace fs = std::filesystem;

class Trainer : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("nn_trainer_" + std::to_string(::getpid()) + "_" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    pneumonia::SyntheticXrayOptions o;
    o.size = 32;
    o.seed = 4;
    pneumonia::write_synthetic_dataset((root_ / "data").string(), 16, 16, o);
  }
  void TearDown() override { fs::remove_all(root_); }

  pneumonia::TrainConfig config(const std::string& run) const {
    pneumonia::TrainConfig c;
    c.data = (root_ / "data").string();
    c.out = (root_ / run).string();
    c.image_size = 32;
    c.width = 1.0 / 16;
    c.depth = 11;
    c.batch_size = 8;
    c.val_fraction = 0.25;
    c.epochs = 3;
    c.workers = 1;
    c.seed = 2;
    c.patience = 100;
    c.progress = false;
    return c;
  }

  fs::path root_;
};

TEST_F(Trainer, StepByStep) {
  pneumonia::Trainer t(config("run"));
  EXPECT_THROW(t.build_model(), nn::Error);  // data first
  t.load_data();
  EXPECT_EQ(t.samples().size(), 32u);
  EXPECT_EQ(t.split().train.size() + t.split().val.size(), 32u);
  EXPECT_EQ(t.split().val.size(), 8u);  // a quarter of each class (every image is its own patient)
  EXPECT_THROW(t.evaluate(), nn::Error);  // the model first
  t.build_model();
  EXPECT_FALSE(t.resume());  // config.resume is off
  EXPECT_EQ(t.next_epoch(), 1);

  pneumonia::Evaluation before = t.evaluate();
  ASSERT_EQ(before.probs.size(), 8u);
  for (double p : before.probs) EXPECT_TRUE(p > 0 && p < 1) << p;
  EXPECT_TRUE(t.train_epoch());
  EXPECT_EQ(t.next_epoch(), 2);
  ASSERT_EQ(t.history().size(), 1u);
  EXPECT_EQ(t.history()[0]["epoch"], 1);
  EXPECT_TRUE(fs::exists(fs::path(t.config().out) / "checkpoint.safetensors"));
  EXPECT_TRUE(fs::exists(fs::path(t.config().out) / "metrics.jsonl"));
  pneumonia::Evaluation after = t.evaluate();
  EXPECT_NE(after.probs, before.probs);  // the weights moved
  EXPECT_DOUBLE_EQ(after.loss, t.history()[0]["val_loss"].get<double>());

  EXPECT_TRUE(t.train_epoch());
  EXPECT_FALSE(t.train_epoch());  // the third and last epoch
  EXPECT_THROW(t.train_epoch(), nn::Error);
  nlohmann::json summary = t.finish();
  EXPECT_EQ(summary["epochs_run"], 3);
  for (const char* f : {"model.safetensors", "summary.json", "curves.png", "roc.png"})
    EXPECT_TRUE(fs::exists(fs::path(t.config().out) / f)) << f;
  const double threshold = summary["threshold"];
  EXPECT_TRUE(threshold >= 0 && threshold <= 1) << threshold;
}

TEST_F(Trainer, ResumeContinuesWithTheSavedWeights) {
  pneumonia::TrainConfig c = config("resume");
  {
    pneumonia::Trainer t(c);
    t.load_data();
    t.build_model();
    t.train_epoch();
  }
  nn::io::SafetensorsFile saved = nn::io::load_safetensors(fs::path(c.out) / "checkpoint.safetensors");
  c.resume = true;
  pneumonia::Trainer t(c);
  t.load_data();
  t.build_model();
  EXPECT_TRUE(t.resume());
  EXPECT_EQ(t.next_epoch(), 2);
  EXPECT_EQ(t.history().size(), 1u);
  for (const auto& [name, value] : t.model().state_dict())
    EXPECT_EQ(value.to_vector<float>(), saved.at("model." + name).to_vector<float>()) << name;
  // A run with other settings does not resume from it.
  c.image_size = 48;
  pneumonia::Trainer other(c);
  other.load_data();
  other.build_model();
  EXPECT_THROW(other.resume(), nn::Error);
}

}  // namespace

#endif  // NN_HAVE_PNEUMONIA_COMMON
