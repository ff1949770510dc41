// Image-folder datasets (root/CLASS/*.jpeg, torchvision ImageFolder / Keras flow_from_directory
// layout), patient ids of the chest X-ray file names, seeded stratified (optionally per-patient)
// splits, class weights and per-epoch sample orders. Everything is deterministic for a seed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace nn::data {

struct Sample {
  std::string path;
  int64_t label = 0;
  std::string patient;  // patient_id(path) when scanned; may be empty for hand-made samples
};

struct ImageFolder {
  std::string root;
  std::vector<std::string> classes;  // label i = classes[i] (sorted: NORMAL = 0, PNEUMONIA = 1)
  std::vector<Sample> samples;       // sorted by class, then by path relative to the class folder
  std::vector<std::string> skipped;  // "path: reason" for every file that is not taken
};

// Scans root/CLASS/** (recursively inside each class folder) for image files by name
// (is_image_file_name: .jpeg/.jpg/.png in any case). Skipped, and listed in `skipped` with a reason:
// hidden files and folders (".DS_Store", AppleDouble "._x.jpeg", ".git"), "__MACOSX" folders,
// other extensions, files directly in root, and (with `classes` given) folders that are not one of
// them. Files are not opened: a corrupt image is found when it is loaded.
// `classes` empty: every visible sub-folder of root is a class, in sorted (byte) order.
// `classes` given: exactly these classes, labelled in the given order.
// Errors (nn::Error): root missing or not a directory, fewer than 2 classes, a requested class
// missing, duplicate requested classes, a class without images, a folder that cannot be listed.
ImageFolder scan_image_folder(const std::string& root, const std::vector<std::string>& classes = {});

// The patient of a Kermany et al. chest X-ray from its file name:
//   "person1000_bacteria_2931.jpeg" -> "person1000"
//   "IM-0115-0001.jpeg", "IM-0429-0001-0002.jpeg" -> "IM-0115", "IM-0429"
//   "NORMAL2-IM-1427-0001.jpeg" -> "NORMAL2-IM-1427"
// otherwise the file stem ("scan.png" -> "scan").
std::string patient_id(const std::string& path);

struct Split {
  std::vector<int64_t> train, val;  // indices into samples, each sorted ascending
};
// Stratified by label: for each class with n samples, round(val_fraction * n) go to val, at least 1
// when n >= 2 and val_fraction > 0, and at least 1 stays in train; chosen by a seeded shuffle.
// by_patient: samples are grouped by patient (Sample::patient, or patient_id(path) when empty);
// each patient is labelled with its most frequent label (ties: the smallest), and per label whole
// patients, in seeded shuffled order, go to val until it holds round(val_fraction * n) of that
// label's samples (at least 1 patient when the label has >= 2 patients; at least 1 stays in
// train), so no patient is on both sides. val_fraction in [0, 1).
Split stratified_split(const std::vector<Sample>& samples, double val_fraction, uint64_t seed,
                       bool by_patient = false);

// sklearn's class_weight="balanced": n / (num_classes * count_c). Error if a class is empty or a
// label is outside [0, num_classes).
std::vector<double> class_weights(const std::vector<int64_t>& labels, int64_t num_classes);

// The order of one epoch, a function of (indices, labels, seed, epoch, shuffle, balanced) only:
//   balanced: indices.size() draws with replacement; each draw picks a class uniformly among the
//             classes present in `indices`, then a sample of that class uniformly (ignores shuffle);
//   shuffle:  a seeded permutation of `indices`;
//   neither:  `indices` as given.
// labels_of_all_samples[i] is the label of sample i (indices index it). epoch >= 0.
std::vector<int64_t> epoch_order(const std::vector<int64_t>& indices,
                                 const std::vector<int64_t>& labels_of_all_samples, uint64_t seed,
                                 int64_t epoch, bool shuffle, bool balanced);

}  // namespace nn::data
