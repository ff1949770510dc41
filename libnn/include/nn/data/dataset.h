// Image-folder datasets (root/CLASS/*.jpeg, torchvision ImageFolder / Keras flow_from_directory
// layout), seeded stratified splits that can keep groups of samples together (e.g. the images of
// one patient), class weights and per-epoch sample orders. Everything is deterministic for a seed.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace nn::data {

struct Sample {
  std::string path;
  int64_t label = 0;
  // What keeps samples together in a grouped split (e.g. the patient an image belongs to): set by
  // scan_image_folder's `group_of`; empty: the sample is a group of its own.
  std::string group;
};

// The group of a file, from its path (e.g. a patient id parsed from the file name).
using GroupOf = std::function<std::string(const std::string& path)>;

struct ImageFolder {
  std::string root;
  std::vector<std::string> classes;  // label i = classes[i] (sorted by name unless given)
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
// `group_of`, when given, sets each sample's group from its path.
// Errors (nn::Error): root missing or not a directory, fewer than 2 classes, a requested class
// missing, duplicate requested classes, a class without images, a folder that cannot be listed.
ImageFolder scan_image_folder(const std::string& root, const std::vector<std::string>& classes = {},
                              const GroupOf& group_of = nullptr);

struct Split {
  std::vector<int64_t> train, val;  // indices into samples, each sorted ascending
};
// Stratified by label: for each class with n samples, round(val_fraction * n) go to val, at least 1
// when n >= 2 and val_fraction > 0, and at least 1 stays in train; chosen by a seeded shuffle.
// grouped: samples are grouped by Sample::group (a sample with an empty group is alone); each group
// is labelled with its most frequent label (ties: the smallest), and per label whole groups, in
// seeded shuffled order, go to val until it holds round(val_fraction * n) of that label's samples
// (at least 1 group when the label has >= 2 groups; at least 1 stays in train), so no group is on
// both sides. val_fraction in [0, 1).
Split stratified_split(const std::vector<Sample>& samples, double val_fraction, uint64_t seed,
                       bool grouped = false);
// The grouped split with each sample's group taken from group_of(path) instead.
Split stratified_group_split(const std::vector<Sample>& samples, double val_fraction, uint64_t seed,
                             const GroupOf& group_of);

// k-fold cross-validation, stratified and (grouped) keeping groups together: split k's val is
// fold k, its train the other k - 1 folds. Every sample is in exactly one fold. Groups are labelled
// as in stratified_split; per label, whole groups in seeded shuffled order go to the fold that
// holds the fewest samples of that label so far (the lowest index on ties), so each fold has about
// 1/k of every label. Without `grouped` every sample is its own group. k >= 2; each label needs at
// least k groups.
std::vector<Split> stratified_kfold(const std::vector<Sample>& samples, int k, uint64_t seed, bool grouped = false);

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
