// examples/pneumonia/common/chest_xray_folder: the patients of the Kermany et al. file names and the
// patient-level split of a NORMAL/ + PNEUMONIA/ folder (suite ChestXrayFolder; ChestXrayFolderRealData
// reads ../shared/data and skips when it is absent).
#ifdef NN_HAVE_PNEUMONIA_COMMON

#include <gtest/gtest.h>
#include <nn/data/dataset.h>
#include <nn/data/image.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "chest_xray_folder.h"

namespace {

namespace fs = std::filesystem;

TEST(ChestXrayFolder, PatientIds) {
  using pneumonia::patient_id;
  EXPECT_EQ(patient_id("person1000_bacteria_2931.jpeg"), "person1000");
  EXPECT_EQ(patient_id("/data/train/PNEUMONIA/person1_virus_6.jpeg"), "person1");
  EXPECT_EQ(patient_id("person447_virus_921_1.jpeg"), "person447");
  EXPECT_EQ(patient_id("IM-0115-0001.jpeg"), "IM-0115");
  EXPECT_EQ(patient_id("IM-0429-0001-0002.jpeg"), "IM-0429");
  EXPECT_EQ(patient_id("NORMAL2-IM-1427-0001.jpeg"), "NORMAL2-IM-1427");
  EXPECT_EQ(patient_id("NORMAL/NORMAL2-IM-0395-0001-0001.jpeg"), "NORMAL2-IM-0395");
  EXPECT_EQ(patient_id("scan.png"), "scan");
  EXPECT_EQ(patient_id("dir/IM-abc.jpeg"), "IM-abc");
  EXPECT_EQ(patient_id("personX_1.png"), "personX_1");
}

TEST(ChestXrayFolder, ScanGroupsByPatient) {
  const fs::path r = fs::temp_directory_path() / ("nn_chest_xray_folder_" + std::to_string(::getpid()));
  fs::remove_all(r);
  nn::data::Image im{4, 4, 1, std::vector<float>(16, 0.5f)};
  const std::vector<uint8_t> png = nn::data::encode_png(im);
  for (const char* rel : {"NORMAL/IM-0001-0001.jpeg", "NORMAL/IM-0001-0002.png", "NORMAL/sub/NORMAL2-IM-0003-0001.JPG",
                          "PNEUMONIA/person1_bacteria_1.jpeg", "PNEUMONIA/person1_virus_2.jpeg", "OTHER/x.png"}) {
    fs::create_directories((r / rel).parent_path());
    std::ofstream(r / rel, std::ios::binary).write(reinterpret_cast<const char*>(png.data()), static_cast<std::streamsize>(png.size()));
  }
  nn::data::ImageFolder f = pneumonia::scan_xray_folder(r.string());
  fs::remove_all(r);
  EXPECT_EQ(f.classes, pneumonia::xray_classes());
  ASSERT_EQ(f.samples.size(), 5u);
  EXPECT_EQ(f.samples[0].group, "IM-0001");
  EXPECT_EQ(f.samples[1].group, "IM-0001");
  EXPECT_EQ(f.samples[2].group, "NORMAL2-IM-0003");
  EXPECT_EQ(f.samples[3].group, "person1");
  EXPECT_EQ(f.samples[4].group, "person1");
  EXPECT_EQ(f.samples[3].label, 1);
}

TEST(ChestXrayFolderRealData, PatientLevelSplit) {
  const std::string root = NN_SOURCE_DIR "/../shared/data/chest_xray/train";
  if (!fs::is_directory(root)) GTEST_SKIP() << root << " is absent";
  nn::data::ImageFolder f = pneumonia::scan_xray_folder(root);
  ASSERT_EQ(f.samples.size(), 5216u);
  for (const nn::data::Sample& s : f.samples) EXPECT_NE(s.group, fs::path(s.path).stem().string()) << s.path;
  nn::data::Split split = nn::data::stratified_split(f.samples, 0.1, 0, /*grouped=*/true);
  std::set<std::string> train_patients;
  for (int64_t i : split.train) train_patients.insert(f.samples[i].group);
  int64_t val_normal = 0;
  for (int64_t i : split.val) {
    EXPECT_EQ(train_patients.count(f.samples[i].group), 0u) << f.samples[i].path;
    val_normal += f.samples[i].label == 0;
  }
  EXPECT_NEAR(static_cast<double>(split.val.size()), 521.6, 15.0);
  EXPECT_NEAR(static_cast<double>(val_normal), 134.1, 5.0);
}

}  // namespace

#endif  // NN_HAVE_PNEUMONIA_COMMON
