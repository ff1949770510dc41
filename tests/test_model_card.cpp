// The model card of examples/pneumonia/common/model_card.h: the Wilson interval against the formula
// evaluated separately in Python (double precision, z = 1.959963984540054), and the card's numbers against the evaluation it is given.
#include <gtest/gtest.h>

#ifdef NN_HAVE_PNEUMONIA_COMMON

#include <nn/error.h>
#include <nn/metrics.h>

#include <cmath>
#include <string>
#include <vector>

#include "model_card.h"

namespace {

TEST(ModelCard, WilsonIntervalMatchesReferenceValues) {
  // z = 1.959964: 5/10 -> 0.2366-0.7634; 0/10 -> 0-0.2775; 30/30 -> 0.8865-1; 81/100 -> 0.7222-0.8749.
  const struct {
    int64_t k, n;
    double low, high;
  } cases[] = {{5, 10, 0.236593, 0.763407}, {0, 10, 0.0, 0.277533}, {30, 30, 0.886487, 1.0}, {81, 100, 0.722212, 0.874852}};
  for (const auto& c : cases) {
    const nn::metrics::Interval ci = pneumonia::wilson_interval(c.k, c.n);
    EXPECT_NEAR(ci.low, c.low, 1e-6) << c.k << "/" << c.n;
    EXPECT_NEAR(ci.high, c.high, 1e-6) << c.k << "/" << c.n;
  }
  EXPECT_TRUE(std::isnan(pneumonia::wilson_interval(0, 0).low));
  EXPECT_THROW(pneumonia::wilson_interval(11, 10), nn::Error);
}

TEST(ModelCard, ReportsTheEvaluationItIsGiven) {
  pneumonia::PneumoniaModel model;
  model.spec.depth = 11;
  model.spec.batch_norm = true;
  model.spec.members = 3;
  model.spec.temperature = 1.25;
  model.spec.threshold = 0.4;
  model.metadata = {{"trained_on", "data/train"}, {"threshold_rule", "sensitivity:0.95"},
                    {"protocol_clean_auc", "0.99712345"}, {"protocol_mean_auc", "0.9951"}};
  pneumonia::CardEvaluation e;
  e.folder = "data/test";
  e.images[0] = 12;
  e.images[1] = 10;
  e.refused[0] = 2;
  e.refused[1] = 0;
  e.threshold = 0.4;
  e.probabilities = {0.1, 0.2, 0.3, 0.5, 0.05, 0.15, 0.25, 0.35, 0.6, 0.1, 0.9, 0.8, 0.7, 0.3, 0.95, 0.85, 0.75, 0.65, 0.55, 0.45};
  e.labels = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
  e.metrics = nn::metrics::binary_metrics(e.probabilities, e.labels, e.threshold);
  e.auc_interval = {0.8, 0.99};
  e.bootstrap = 100;
  const std::string card = pneumonia::model_card_markdown("runs/x/model.safetensors", model, e);
  auto has = [&](const std::string& part) { return card.find(part) != std::string::npos; };
  EXPECT_TRUE(has("# Model card: model.safetensors")) << card;
  EXPECT_TRUE(has("VGG11 with batch norm")) << card;
  EXPECT_TRUE(has("Members: 3 (a cross-validated ensemble")) << card;
  EXPECT_TRUE(has("sigmoid(logit / 1.250)")) << card;
  EXPECT_TRUE(has("out-of-fold AUC 0.9971 clean, 0.9951")) << card;
  EXPECT_TRUE(has("22 images answered (12 NORMAL, 10 PNEUMONIA)")) << card;
  EXPECT_TRUE(has("Refused by the out-of-distribution gate: 2 (9.1%): 2 NORMAL (16.7%), 0 PNEUMONIA (0.0%)")) << card;
  // At 0.4: positives >= 0.4 among the PNEUMONIA images: 9 of 10 (0.3 misses); NORMAL: 0.5, 0.6 -> 8 of 10 negative.
  EXPECT_TRUE(has("| Sensitivity (recall of PNEUMONIA) | 0.900 (0.596-0.982) | 9 / 10 |")) << card;
  EXPECT_TRUE(has("| Specificity | 0.800 (0.490-0.943) | 8 / 10 |")) << card;
  EXPECT_TRUE(has("(0.800-0.990)")) << card;
  EXPECT_TRUE(has("| NORMAL | 8 | 2 |")) << card;
  EXPECT_TRUE(has("| PNEUMONIA | 1 | 9 |")) << card;
  EXPECT_TRUE(has("## Calibration")) << card;
  EXPECT_TRUE(has("## Intended use")) << card;
  EXPECT_TRUE(has("## Limitations")) << card;
  EXPECT_TRUE(has("no feature check")) << card;  // a default gate has no feature stage
}

}  // namespace

#endif  // NN_HAVE_PNEUMONIA_COMMON
