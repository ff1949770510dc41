// The chest X-ray folder layout and the patients of its file names (chest_xray_folder.h).
#include "chest_xray_folder.h"

#include <filesystem>
#include <regex>

namespace pneumonia {

const std::vector<std::string>& xray_classes() {
  static const std::vector<std::string> classes = {"NORMAL", "PNEUMONIA"};
  return classes;
}

std::string patient_id(const std::string& path) {
  const std::string stem = std::filesystem::path(path).stem().string();
  static const std::regex person(R"(^(person\d+)_.*$)");
  static const std::regex im(R"(^((?:[A-Za-z0-9]+-)?IM-\d+)-\d+(?:-\d+)*$)");
  std::smatch m;
  if (std::regex_match(stem, m, person) || std::regex_match(stem, m, im)) return m[1].str();
  return stem;
}

nn::data::ImageFolder scan_xray_folder(const std::string& root, const std::vector<std::string>& classes) {
  return nn::data::scan_image_folder(root, classes, patient_id);
}

}  // namespace pneumonia
