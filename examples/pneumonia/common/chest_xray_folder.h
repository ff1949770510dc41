// The chest X-ray data set of Kermany et al. (Cell 2018) as the pneumonia programs read it: a
// folder with NORMAL/ and PNEUMONIA/ subfolders, and the patient each image belongs to, parsed from
// the data set's file names, so that a validation split never holds a patient also trained on.
#pragma once

#include <nn/data/dataset.h>

#include <string>
#include <vector>

namespace pneumonia {

// The classes, label 0 and label 1 (the logit's class).
const std::vector<std::string>& xray_classes();

// The patient of a Kermany et al. chest X-ray from its file name:
//   "person1000_bacteria_2931.jpeg" -> "person1000"
//   "IM-0115-0001.jpeg", "IM-0429-0001-0002.jpeg" -> "IM-0115", "IM-0429"
//   "NORMAL2-IM-1427-0001.jpeg" -> "NORMAL2-IM-1427"
// otherwise the file stem ("scan.png" -> "scan").
std::string patient_id(const std::string& path);

// nn::data::scan_image_folder over `classes` (default: xray_classes()), each sample's group its
// patient_id.
nn::data::ImageFolder scan_xray_folder(const std::string& root,
                                       const std::vector<std::string>& classes = xray_classes());

}  // namespace pneumonia
