// Image folders, grouped and stratified splits, class weights, epoch orders (nn/data/dataset.h).
#include "nn/data/dataset.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <system_error>

#include "nn/data/image.h"
#include "nn/error.h"
#include "nn/generator.h"

namespace fs = std::filesystem;

namespace nn::data {
namespace {

// A Philox stream keyed by the user's seed; `stream` (the high counter word) separates the
// purposes (split of a label, epoch order, ...) so they never share numbers.
class Stream {
 public:
  Stream(uint64_t seed, uint64_t stream) : key_(seed), stream_(stream) {}
  uint32_t next32() {
    if (used_ == 4) {
      philox4x32(key_, counter_++, stream_, block_);
      used_ = 0;
    }
    return block_[used_++];
  }
  uint64_t next64() {
    uint64_t hi = next32();
    return (hi << 32) | next32();
  }
  // Uniform in [0, n), n >= 1 (multiply-shift; the bias is below n / 2^64).
  uint64_t below(uint64_t n) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(next64()) * n) >> 64);
  }
  template <typename T>
  void shuffle(std::vector<T>& v) {  // Fisher-Yates
    for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[below(i)]);
  }

 private:
  uint64_t key_, stream_;
  uint64_t counter_ = 0;
  uint32_t block_[4] = {};
  int used_ = 4;
};

enum StreamTag : uint64_t { kSplitSamples = 1, kSplitGroups = 2, kEpochShuffle = 3, kEpochBalanced = 4, kKFold = 5 };

uint64_t stream_id(StreamTag tag, uint64_t value) {
  return (static_cast<uint64_t>(tag) << 56) ^ (value & ((uint64_t{1} << 56) - 1));
}

bool hidden(const std::string& name) { return !name.empty() && name[0] == '.'; }

std::string error_text(const std::error_code& ec) { return ec.message(); }

// How many of n items go to val.
int64_t val_count(int64_t n, double fraction) {
  if (n < 2 || fraction <= 0.0) return 0;
  int64_t k = static_cast<int64_t>(std::llround(fraction * static_cast<double>(n)));
  return std::clamp<int64_t>(k, 1, n - 1);
}

}  // namespace

ImageFolder scan_image_folder(const std::string& root, const std::vector<std::string>& classes,
                              const GroupOf& group_of) {
  std::error_code ec;
  NN_CHECK(!root.empty(), "scan_image_folder: empty root path");
  fs::file_status st = fs::status(root, ec);
  NN_CHECK(!ec || ec == std::errc::no_such_file_or_directory,
           "scan_image_folder: cannot access '", root, "': ", error_text(ec));
  NN_CHECK(fs::exists(st), "scan_image_folder: '", root, "' does not exist");
  NN_CHECK(fs::is_directory(st), "scan_image_folder: '", root, "' is not a directory");

  ImageFolder folder;
  folder.root = root;

  // The visible sub-folders of root; everything else at the top level is skipped.
  std::vector<std::string> dirs;
  {
    fs::directory_iterator it(root, ec), end;
    NN_CHECK(!ec, "scan_image_folder: cannot list '", root, "': ", error_text(ec));
    for (; it != end; it.increment(ec)) {
      NN_CHECK(!ec, "scan_image_folder: cannot list '", root, "': ", error_text(ec));
      const std::string name = it->path().filename().string();
      const std::string path = it->path().string();
      std::error_code dec;
      const bool is_dir = it->is_directory(dec);
      if (hidden(name)) {
        folder.skipped.push_back(path + ": hidden " + (is_dir ? "folder" : "file"));
      } else if (is_dir && name == "__MACOSX") {
        folder.skipped.push_back(path + ": macOS resource-fork folder");
      } else if (is_dir) {
        dirs.push_back(name);
      } else {
        folder.skipped.push_back(path + ": not inside a class folder");
      }
    }
  }
  std::sort(dirs.begin(), dirs.end());

  if (classes.empty()) {
    folder.classes = dirs;
  } else {
    std::set<std::string> seen;
    for (const std::string& c : classes) {
      NN_CHECK(!c.empty(), "scan_image_folder: empty class name");
      NN_CHECK(seen.insert(c).second, "scan_image_folder: class '", c, "' is requested twice");
    }
    std::string missing;
    for (const std::string& c : classes)
      if (!std::binary_search(dirs.begin(), dirs.end(), c)) missing += (missing.empty() ? "'" : ", '") + c + "'";
    std::string found;
    for (const std::string& d : dirs) found += (found.empty() ? "'" : ", '") + d + "'";
    NN_CHECK(missing.empty(), "scan_image_folder: class folder(s) ", missing, " missing in '", root,
             "' (found ", found.empty() ? std::string("none") : found, ")");
    for (const std::string& d : dirs)
      if (!seen.count(d)) folder.skipped.push_back((fs::path(root) / d).string() + ": not one of the requested classes");
    folder.classes = classes;
  }
  NN_CHECK(folder.classes.size() >= 2, "scan_image_folder: '", root,
           "' needs at least 2 class folders, found ", folder.classes.size(),
           folder.classes.empty() ? std::string() : " ('" + folder.classes[0] + "')");

  for (size_t label = 0; label < folder.classes.size(); ++label) {
    const fs::path class_dir = fs::path(root) / folder.classes[label];
    std::vector<std::pair<std::string, std::string>> files;  // (relative path, full path)
    fs::recursive_directory_iterator it(class_dir, fs::directory_options::follow_directory_symlink, ec), end;
    NN_CHECK(!ec, "scan_image_folder: cannot list '", class_dir.string(), "': ", error_text(ec));
    for (; it != end; it.increment(ec)) {
      NN_CHECK(!ec, "scan_image_folder: cannot list '", class_dir.string(), "': ", error_text(ec));
      const fs::path& p = it->path();
      const std::string name = p.filename().string();
      std::error_code dec;
      if (it->is_directory(dec)) {
        if (hidden(name) || name == "__MACOSX") {
          folder.skipped.push_back(p.string() + (hidden(name) ? ": hidden folder" : ": macOS resource-fork folder"));
          it.disable_recursion_pending();
        }
        continue;
      }
      if (hidden(name)) {
        folder.skipped.push_back(p.string() + (name.rfind("._", 0) == 0 ? ": AppleDouble metadata file" : ": hidden file"));
      } else if (!is_image_file_name(name)) {
        folder.skipped.push_back(p.string() + ": not an image file name (.jpeg, .jpg, .png)");
      } else if (!it->is_regular_file(dec)) {
        folder.skipped.push_back(p.string() + ": not a regular file");
      } else {
        files.emplace_back(p.lexically_relative(class_dir).generic_string(), p.string());
      }
    }
    NN_CHECK(!files.empty(), "scan_image_folder: class folder '", class_dir.string(),
             "' holds no images (.jpeg, .jpg, .png)");
    std::sort(files.begin(), files.end());
    for (auto& [relative, full] : files) {
      Sample s;
      s.path = full;
      s.label = static_cast<int64_t>(label);
      if (group_of) s.group = group_of(full);
      folder.samples.push_back(std::move(s));
    }
  }
  return folder;
}

Split stratified_group_split(const std::vector<Sample>& samples, double val_fraction, uint64_t seed,
                             const GroupOf& group_of) {
  NN_CHECK(static_cast<bool>(group_of), "stratified_group_split: no group function given");
  std::vector<Sample> grouped = samples;
  for (Sample& s : grouped) s.group = group_of(s.path);
  return stratified_split(grouped, val_fraction, seed, true);
}

namespace {

// The groups of `samples` (by Sample::group, or each sample alone when not grouped or its group is
// empty), each with its samples and its label (the most frequent one; ties: the smallest), listed
// per label in sorted group-name order (independent of the sample order).
struct Groups {
  std::vector<std::vector<int64_t>> members;
  std::map<int64_t, std::vector<size_t>> of_label;  // label -> indices into members
  std::map<int64_t, int64_t> samples_of_label;
};

Groups make_groups(const std::vector<Sample>& samples, bool grouped) {
  std::map<std::string, size_t> index;
  Groups g;
  std::vector<std::map<int64_t, int64_t>> labels;
  for (size_t i = 0; i < samples.size(); ++i) {
    // A sample without a group is alone (keyed by its path, with a prefix no group name can take).
    const std::string id = (!grouped || samples[i].group.empty()) ? std::string(1, '\0') + samples[i].path + '\0' +
                                                                        std::to_string(i)
                                                                  : samples[i].group;
    auto [it, fresh] = index.emplace(id, g.members.size());
    if (fresh) {
      g.members.emplace_back();
      labels.emplace_back();
    }
    g.members[it->second].push_back(static_cast<int64_t>(i));
    ++labels[it->second][samples[i].label];
  }
  for (const auto& [id, p] : index) {
    int64_t best = 0, best_count = -1;
    for (const auto& [label, count] : labels[p])
      if (count > best_count) best = label, best_count = count;  // map order: ties -> smallest
    g.of_label[best].push_back(p);
    g.samples_of_label[best] += static_cast<int64_t>(g.members[p].size());
  }
  return g;
}

}  // namespace

std::vector<Split> stratified_kfold(const std::vector<Sample>& samples, int k, uint64_t seed, bool grouped) {
  NN_CHECK(k >= 2, "stratified_kfold: k must be at least 2, got ", k);
  Groups g = make_groups(samples, grouped);
  std::vector<int> fold_of(samples.size(), 0);
  for (auto& [label, groups] : g.of_label) {
    NN_CHECK(static_cast<int64_t>(groups.size()) >= k, "stratified_kfold: label ", label, " has ", groups.size(),
             grouped ? " groups" : " samples", ", fewer than the ", k, " folds");
    Stream rng(seed, stream_id(kKFold, static_cast<uint64_t>(label)));
    rng.shuffle(groups);
    std::vector<int64_t> filled(static_cast<size_t>(k), 0);
    for (size_t group : groups) {
      const int fold = static_cast<int>(std::min_element(filled.begin(), filled.end()) - filled.begin());
      for (int64_t s : g.members[group]) fold_of[static_cast<size_t>(s)] = fold;
      filled[static_cast<size_t>(fold)] += static_cast<int64_t>(g.members[group].size());
    }
  }
  std::vector<Split> splits(static_cast<size_t>(k));
  for (size_t i = 0; i < samples.size(); ++i)
    for (int f = 0; f < k; ++f) (f == fold_of[i] ? splits[f].val : splits[f].train).push_back(static_cast<int64_t>(i));
  return splits;
}

Split stratified_split(const std::vector<Sample>& samples, double val_fraction, uint64_t seed,
                       bool grouped) {
  NN_CHECK(std::isfinite(val_fraction) && val_fraction >= 0.0 && val_fraction < 1.0,
           "stratified_split: val_fraction must be in [0, 1), got ", val_fraction);
  std::vector<bool> in_val(samples.size(), false);
  if (!grouped) {
    std::map<int64_t, std::vector<int64_t>> by_label;
    for (size_t i = 0; i < samples.size(); ++i) by_label[samples[i].label].push_back(static_cast<int64_t>(i));
    for (auto& [label, members] : by_label) {
      Stream rng(seed, stream_id(kSplitSamples, static_cast<uint64_t>(label)));
      rng.shuffle(members);
      const int64_t k = val_count(static_cast<int64_t>(members.size()), val_fraction);
      for (int64_t j = 0; j < k; ++j) in_val[members[j]] = true;
    }
  } else {
    Groups g = make_groups(samples, true);
    for (auto& [label, groups] : g.of_label) {
      if (groups.size() < 2 || val_fraction <= 0.0) continue;
      Stream rng(seed, stream_id(kSplitGroups, static_cast<uint64_t>(label)));
      rng.shuffle(groups);
      const int64_t target = static_cast<int64_t>(std::llround(val_fraction * static_cast<double>(g.samples_of_label[label])));
      int64_t taken = 0;
      for (size_t j = 0; j + 1 < groups.size(); ++j) {  // the last one always stays in train
        if (j > 0 && taken >= target) break;
        for (int64_t s : g.members[groups[j]]) in_val[s] = true;
        taken += static_cast<int64_t>(g.members[groups[j]].size());
      }
    }
  }
  Split split;
  for (size_t i = 0; i < samples.size(); ++i) (in_val[i] ? split.val : split.train).push_back(static_cast<int64_t>(i));
  return split;
}

std::vector<double> class_weights(const std::vector<int64_t>& labels, int64_t num_classes) {
  NN_CHECK(num_classes >= 1, "class_weights: num_classes must be positive, got ", num_classes);
  std::vector<int64_t> counts(static_cast<size_t>(num_classes), 0);
  for (size_t i = 0; i < labels.size(); ++i) {
    NN_CHECK(labels[i] >= 0 && labels[i] < num_classes, "class_weights: labels[", i, "] = ", labels[i],
             " is outside [0, ", num_classes, ")");
    ++counts[labels[i]];
  }
  std::vector<double> weights(counts.size());
  for (size_t c = 0; c < counts.size(); ++c) {
    NN_CHECK(counts[c] > 0, "class_weights: class ", c, " has no samples");
    weights[c] = static_cast<double>(labels.size()) / (static_cast<double>(num_classes) * static_cast<double>(counts[c]));
  }
  return weights;
}

std::vector<int64_t> epoch_order(const std::vector<int64_t>& indices,
                                 const std::vector<int64_t>& labels_of_all_samples, uint64_t seed,
                                 int64_t epoch, bool shuffle, bool balanced) {
  NN_CHECK(epoch >= 0, "epoch_order: epoch must be >= 0, got ", epoch);
  const int64_t n_all = static_cast<int64_t>(labels_of_all_samples.size());
  for (size_t i = 0; i < indices.size(); ++i)
    NN_CHECK(indices[i] >= 0 && indices[i] < n_all, "epoch_order: indices[", i, "] = ", indices[i],
             " is outside [0, ", n_all, ")");
  if (balanced) {
    std::map<int64_t, std::vector<int64_t>> by_label;
    for (int64_t i : indices) by_label[labels_of_all_samples[i]].push_back(i);
    std::vector<const std::vector<int64_t>*> groups;
    for (const auto& [label, members] : by_label) groups.push_back(&members);
    Stream rng(seed, stream_id(kEpochBalanced, static_cast<uint64_t>(epoch)));
    std::vector<int64_t> order(indices.size());
    for (int64_t& o : order) {
      const std::vector<int64_t>& g = *groups[rng.below(groups.size())];
      o = g[rng.below(g.size())];
    }
    return order;
  }
  std::vector<int64_t> order = indices;
  if (shuffle) {
    Stream rng(seed, stream_id(kEpochShuffle, static_cast<uint64_t>(epoch)));
    rng.shuffle(order);
  }
  return order;
}

}  // namespace nn::data
