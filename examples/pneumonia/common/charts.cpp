// Charts with PLplot (pngcairo). PLplot reports some errors on stderr and calls exit() on fatal
// ones, so everything it could fail on is checked here first: the device exists, the output
// directory is writable (a temporary file is created before PLplot starts), the data are finite
// where PLplot sees them (NaNs are dropped, lines break around them) and ranges are never empty.
#include "charts.h"

#include <plstream.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>
#include <vector>

#include "nn/error.h"

namespace pneumonia {
namespace {

namespace fs = std::filesystem;

std::mutex& plplot_mutex() {
  static std::mutex m;
  return m;
}

// Colour map 0 (set before init: pngcairo's default is a black background with red axes).
enum Colour : PLINT {
  kWhite = 0,  // background
  kBlack = 1,  // axes, labels, text
  kGrid = 2,
  kBlue = 3,    // training / ROC curve (matplotlib's tab:blue)
  kOrange = 4,  // validation (tab:orange)
  kGray = 5,    // chance diagonal, legend frame
  kRed = 6,     // operating point (tab:red)
  kColours = 7
};

// Text sizes are multiples of the chart's base character scale (guarded by plplot_mutex()).
double g_text = 1.0;

void set_colour_map(plstream& pls) {
  const std::array<PLINT, kColours> r{255, 0, 225, 31, 255, 128, 214};
  const std::array<PLINT, kColours> g{255, 0, 225, 119, 127, 128, 39};
  const std::array<PLINT, kColours> b{255, 0, 225, 180, 14, 128, 40};
  pls.scmap0n(16);
  pls.scmap0(r.data(), g.data(), b.data(), kColours);
}

void check_device(const char* device) {
  const int capacity = 256;
  std::vector<const char*> menu(capacity), names(capacity);
  const char** menu_ptr = menu.data();
  const char** names_ptr = names.data();
  int count = capacity;
  plgDevs(&menu_ptr, &names_ptr, &count);
  for (int i = 0; i < count; ++i) {
    if (names_ptr[i] != nullptr && std::strcmp(names_ptr[i], device) == 0) return;
  }
  NN_CHECK(false, "charts: PLplot's '", device,
           "' device is not available (install Debian's plplot-driver-cairo)");
}

// PLplot text escapes start with '#': a literal '#' is "##".
std::string escape_text(const std::string& text) {
  std::string out;
  for (char c : text) {
    out += c;
    if (c == '#') out += '#';
  }
  return out;
}

std::string format(const char* fmt, double value) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, fmt, value);
  return buffer;
}

// A temporary file next to the destination, created (so the directory is known to be writable)
// before PLplot opens it; renamed over the destination on commit, removed otherwise.
class AtomicOutput {
 public:
  explicit AtomicOutput(const std::string& path) : path_(path) {
    NN_CHECK(!path.empty(), "charts: empty output path");
    fs::path target(path);
    NN_CHECK(target.has_filename(), "charts: output path '", path, "' names a directory");
    fs::path dir = target.parent_path();
    std::error_code ec;
    if (!dir.empty()) {
      NN_CHECK(fs::is_directory(dir, ec), "charts: cannot write '", path, "': directory '",
               dir.string(), "' does not exist");
    }
    NN_CHECK(!fs::is_directory(target, ec), "charts: cannot write '", path, "': it is a directory");
    static std::atomic<unsigned> counter{0};
    std::string name = "." + target.filename().string() + ".tmp-" + std::to_string(::getpid()) +
                       "-" + std::to_string(counter++);
    tmp_ = (dir.empty() ? fs::path(name) : dir / name).string();
    std::FILE* f = std::fopen(tmp_.c_str(), "wb");
    NN_CHECK(f != nullptr, "charts: cannot write '", path, "': ", std::strerror(errno));
    std::fclose(f);
  }
  AtomicOutput(const AtomicOutput&) = delete;
  AtomicOutput& operator=(const AtomicOutput&) = delete;
  ~AtomicOutput() {
    if (!committed_) std::remove(tmp_.c_str());
  }
  const std::string& tmp() const { return tmp_; }
  void commit() {
    std::error_code ec;
    auto size = fs::file_size(tmp_, ec);
    NN_CHECK(!ec && size > 0, "charts: PLplot wrote nothing to '", path_, "'");
    NN_CHECK(std::rename(tmp_.c_str(), path_.c_str()) == 0, "charts: cannot rename '", tmp_,
             "' to '", path_, "': ", std::strerror(errno));
    committed_ = true;
  }

 private:
  std::string path_, tmp_;
  bool committed_ = false;
};

// A new PLplot stream on the pngcairo device writing `file`, width x height pixels, white.
void text_scale(plstream& pls, double relative) { pls.schr(0, g_text * relative); }

std::unique_ptr<plstream> open_stream(const std::string& file, int width, int height, double text) {
  auto pls = std::make_unique<plstream>();
  pls->sdev("pngcairo");
  pls->sfnam(file.c_str());
  pls->spage(0, 0, width, height, 0, 0);
  set_colour_map(*pls);
  pls->init();
  pls->adv(0);
  g_text = text;
  text_scale(*pls, 1.0);
  return pls;
}

struct Series {
  std::vector<double> x, y;  // finite points only
  std::vector<std::vector<std::pair<double, double>>> runs;  // maximal runs of consecutive points
};

// Points (i + 1, values[i]) for epochs, or (xs[i], values[i]); NaN/inf break the line.
Series make_series(const std::vector<double>& xs, const std::vector<double>& ys) {
  Series s;
  bool in_run = false;
  for (size_t i = 0; i < ys.size(); ++i) {
    if (!std::isfinite(xs[i]) || !std::isfinite(ys[i])) {
      in_run = false;
      continue;
    }
    s.x.push_back(xs[i]);
    s.y.push_back(ys[i]);
    if (!in_run) s.runs.emplace_back();
    s.runs.back().emplace_back(xs[i], ys[i]);
    in_run = true;
  }
  return s;
}

void draw_lines(plstream& pls, const Series& s, PLINT colour, PLFLT width, PLINT style) {
  pls.col0(colour);
  pls.width(width);
  pls.lsty(style);
  for (const auto& run : s.runs) {
    if (run.size() < 2) continue;
    std::vector<PLFLT> x, y;
    for (const auto& [px, py] : run) {
      x.push_back(px);
      y.push_back(py);
    }
    pls.line(static_cast<PLINT>(x.size()), x.data(), y.data());
  }
  pls.lsty(1);
  pls.width(1);
}

const char* const kMarkerTrain = "\u25CF";  // filled circle
const char* const kMarkerVal = "\u25A0";    // filled square

void draw_markers(plstream& pls, const Series& s, PLINT colour, const char* marker, PLFLT scale) {
  if (s.x.empty()) return;
  pls.col0(colour);
  text_scale(pls, scale);
  pls.string(static_cast<PLINT>(s.x.size()), s.x.data(), s.y.data(), marker);
  text_scale(pls, 1.0);
}

// Light grid, then the black frame with ticks and numeric labels.
void draw_axes(plstream& pls, PLFLT xtick, PLINT nxsub, PLFLT ytick, PLINT nysub) {
  pls.col0(kGrid);
  pls.width(1);
  pls.box("g", xtick, nxsub, "g", ytick, nysub);
  pls.col0(kBlack);
  pls.box("bcnst", xtick, nxsub, "bcnstv", ytick, nysub);
}

struct LegendEntry {
  std::string text;
  PLINT colour;
  PLINT line_style;  // 0: no line
  PLFLT line_width;
  const char* symbol;  // nullptr: no symbol
  PLFLT symbol_scale;
};

void draw_legend(plstream& pls, const std::vector<LegendEntry>& entries, PLINT position) {
  if (entries.empty()) return;
  const auto n = static_cast<PLINT>(entries.size());
  std::vector<PLINT> opt(n), text_colours(n, kBlack), line_colours(n), line_styles(n),
      symbol_colours(n), symbol_numbers(n, 1);
  std::vector<PLFLT> line_widths(n), symbol_scales(n);
  std::vector<const char*> text(n), symbols(n);
  for (PLINT i = 0; i < n; ++i) {
    const LegendEntry& e = entries[i];
    opt[i] = (e.line_style > 0 ? PL_LEGEND_LINE : 0) | (e.symbol ? PL_LEGEND_SYMBOL : 0);
    text[i] = e.text.c_str();
    line_colours[i] = e.colour;
    line_styles[i] = std::max<PLINT>(e.line_style, 1);
    line_widths[i] = e.line_width;
    symbol_colours[i] = e.colour;
    symbol_scales[i] = g_text * e.symbol_scale;  // absolute character scales, like the markers'
    symbols[i] = e.symbol ? e.symbol : "";
  }
  PLFLT width = 0, height = 0;
  pls.col0(kGray);
  pls.legend(&width, &height, PL_LEGEND_BACKGROUND | PL_LEGEND_BOUNDING_BOX,
             position | PL_POSITION_INSIDE, 0.025, 0.035, 0.09, kWhite, kGray, 1, n, 1, n,
             opt.data(), 0.6, g_text * 0.9, 2.2, 0.0, text_colours.data(), text.data(), nullptr, nullptr,
             nullptr, nullptr, line_colours.data(), line_styles.data(), line_widths.data(),
             symbol_colours.data(), symbol_scales.data(), symbol_numbers.data(), symbols.data());
  pls.col0(kBlack);
}

// The inside corner where the series leave most room for a legend (like matplotlib's "best").
PLINT best_corner(const std::vector<const Series*>& series, double xmin, double xmax, double ymin,
                  double ymax) {
  const std::array<PLINT, 4> corners{PL_POSITION_TOP | PL_POSITION_RIGHT,
                                     PL_POSITION_BOTTOM | PL_POSITION_RIGHT,
                                     PL_POSITION_TOP | PL_POSITION_LEFT,
                                     PL_POSITION_BOTTOM | PL_POSITION_LEFT};
  std::array<double, 4> crowd{0, 0, 0, 0};
  for (const Series* s : series) {
    for (const auto& run : s->runs) {
      // Sample the polyline densely so segments crossing a corner count, not just vertices.
      for (size_t i = 0; i < run.size(); ++i) {
        int steps = i + 1 < run.size() ? 16 : 1;
        for (int k = 0; k < steps; ++k) {
          double t = static_cast<double>(k) / steps;
          double x = run[i].first, y = run[i].second;
          if (i + 1 < run.size()) {
            x += t * (run[i + 1].first - x);
            y += t * (run[i + 1].second - y);
          }
          double u = (x - xmin) / (xmax - xmin), v = (y - ymin) / (ymax - ymin);
          bool right = u > 0.55, left = u < 0.45, top = v > 0.62, bottom = v < 0.38;
          if (top && right) crowd[0] += 1;
          if (bottom && right) crowd[1] += 1;
          if (top && left) crowd[2] += 1;
          if (bottom && left) crowd[3] += 1;
        }
      }
    }
  }
  size_t best = 0;
  for (size_t i = 1; i < 4; ++i) {
    if (crowd[i] < crowd[best]) best = i;
  }
  return corners[best];
}

// A padded range of the finite values of the series ([0, 1] when there are none).
std::pair<double, double> value_range(const std::vector<const Series*>& series) {
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (const Series* s : series) {
    for (double v : s->y) {
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
  }
  if (!(lo <= hi)) return {0.0, 1.0};
  if (hi - lo < 1e-12 * std::max(1.0, std::abs(hi))) {
    double d = std::max(0.05 * std::abs(hi), 0.05);
    return {lo - d, hi + d};
  }
  double pad = 0.08 * (hi - lo);
  return {lo - pad, hi + pad};
}

void plot_panel(plstream& pls, double vx0, double vx1, double vy0, double vy1, size_t epochs,
                const std::vector<double>& train, const std::vector<double>& val,
                const char* ylabel, const char* title) {
  std::vector<double> xs(std::max(train.size(), val.size()));
  for (size_t i = 0; i < xs.size(); ++i) xs[i] = static_cast<double>(i + 1);
  Series tr = make_series(xs, train), va = make_series(xs, val);
  std::vector<const Series*> all{&tr, &va};
  auto [ymin, ymax] = value_range(all);
  double pad = std::max(0.5, 0.04 * static_cast<double>(epochs));
  double xmin = 1.0 - pad, xmax = static_cast<double>(epochs) + pad;
  // Integer epoch ticks: 1, 2, 5, 10, 20, 50, ... apart, at most about 10 of them.
  double xtick = 1;
  for (double step : {1.0, 2.0, 5.0, 10.0, 20.0, 25.0, 50.0, 100.0, 200.0, 250.0, 500.0, 1000.0}) {
    xtick = step;
    if (static_cast<double>(epochs) / step <= 10.0) break;
  }
  if (static_cast<double>(epochs) / xtick > 10.0) xtick = std::ceil(static_cast<double>(epochs) / 10.0);

  pls.vpor(vx0, vx1, vy0, vy1);
  pls.wind(xmin, xmax, ymin, ymax);
  draw_axes(pls, xtick, xtick >= 2 && std::fmod(xtick, 2.0) == 0 ? 2 : 1, 0, 0);
  pls.col0(kBlack);
  pls.mtex("b", 3.0, 0.5, 0.5, "Epoch");
  pls.mtex("l", 4.6, 0.5, 0.5, ylabel);
  text_scale(pls, 1.15);
  pls.mtex("t", 1.0, 0.5, 0.5, title);
  text_scale(pls, 1.0);

  draw_lines(pls, tr, kBlue, 2.2, 1);
  draw_lines(pls, va, kOrange, 2.2, 1);
  draw_markers(pls, tr, kBlue, kMarkerTrain, 0.75);
  draw_markers(pls, va, kOrange, kMarkerVal, 0.75);

  std::vector<LegendEntry> legend;
  if (!tr.x.empty()) legend.push_back({"Training", kBlue, 1, 2.2, kMarkerTrain, 0.75});
  if (!va.x.empty()) legend.push_back({"Validation", kOrange, 1, 2.2, kMarkerVal, 0.75});
  draw_legend(pls, legend, best_corner(all, xmin, xmax, ymin, ymax));
}

}  // namespace

void plot_training_curves(const std::string& png_path, const EpochCurves& curves,
                          const std::string& title) {
  size_t epochs = std::max({curves.train_loss.size(), curves.val_loss.size(),
                            curves.train_accuracy.size(), curves.val_accuracy.size()});
  NN_CHECK(epochs > 0, "plot_training_curves: no epochs to plot (every series is empty)");
  std::lock_guard<std::mutex> lock(plplot_mutex());
  check_device("pngcairo");
  AtomicOutput out(png_path);
  {
    std::unique_ptr<plstream> pls = open_stream(out.tmp(), 1200, 500, 0.85);
    double top = title.empty() ? 0.91 : 0.82;
    plot_panel(*pls, 0.075, 0.475, 0.14, top, epochs, curves.train_loss, curves.val_loss, "Loss",
               "Training and validation loss");
    plot_panel(*pls, 0.575, 0.975, 0.14, top, epochs, curves.train_accuracy, curves.val_accuracy,
               "Accuracy", "Training and validation accuracy");
    if (!title.empty()) {
      pls->vpor(0, 1, 0, 1);
      pls->wind(0, 1, 0, 1);
      pls->col0(kBlack);
      text_scale(*pls, 1.35);
      pls->mtex("t", -1.5, 0.5, 0.5, escape_text(title).c_str());
      text_scale(*pls, 1.0);
    }
  }  // the stream ends here: pngcairo writes the file
  out.commit();
}

void plot_roc(const std::string& png_path, const std::vector<double>& fpr,
              const std::vector<double>& tpr, double auc, double op_fpr, double op_tpr) {
  NN_CHECK(fpr.size() == tpr.size(), "plot_roc: fpr and tpr differ in size (", fpr.size(), " and ",
           tpr.size(), ")");
  bool has_op = std::isfinite(op_fpr) && std::isfinite(op_tpr) && op_fpr >= 0 && op_tpr >= 0;
  if (has_op) {
    NN_CHECK(op_fpr <= 1 && op_tpr <= 1, "plot_roc: the operating point (", op_fpr, ", ", op_tpr,
             ") is outside [0, 1]");
  }
  std::lock_guard<std::mutex> lock(plplot_mutex());
  check_device("pngcairo");
  AtomicOutput out(png_path);
  {
    std::unique_ptr<plstream> pls = open_stream(out.tmp(), 600, 600, 1.0);
    const double lo = -0.01, hi = 1.01;
    pls->vpor(0.14, 0.95, 0.11, 0.92);
    pls->wind(lo, hi, lo, hi);
    draw_axes(*pls, 0.2, 2, 0.2, 2);
    pls->col0(kBlack);
    pls->mtex("b", 2.8, 0.5, 0.5, "False positive rate (1 - specificity)");
    pls->mtex("l", 3.6, 0.5, 0.5, "True positive rate (sensitivity)");
    std::string auc_text = std::isfinite(auc) ? format("%.3f", auc) : std::string("n/a");
    text_scale(*pls, 1.15);
    pls->mtex("t", 1.2, 0.5, 0.5, ("ROC curve (AUC = " + auc_text + ")").c_str());
    text_scale(*pls, 1.0);

    Series chance = make_series({0.0, 1.0}, {0.0, 1.0});
    draw_lines(*pls, chance, kGray, 1.5, 2);
    Series roc = make_series(fpr, tpr);
    draw_lines(*pls, roc, kBlue, 2.5, 1);
    if (roc.x.size() == 1 || std::any_of(roc.runs.begin(), roc.runs.end(),
                                         [](const auto& r) { return r.size() == 1; })) {
      draw_markers(*pls, roc, kBlue, kMarkerTrain, 0.6);  // isolated points would be invisible
    }
    std::vector<LegendEntry> legend{{"ROC (AUC = " + auc_text + ")", kBlue, 1, 2.5, nullptr, 1},
                                    {"Chance", kGray, 2, 1.5, nullptr, 1}};
    if (has_op) {
      Series op = make_series({op_fpr}, {op_tpr});
      draw_markers(*pls, op, kRed, kMarkerTrain, 1.2);
      legend.push_back({"Operating point (FPR " + format("%.2f", op_fpr) + ", TPR " +
                            format("%.2f", op_tpr) + ")",
                        kRed, 0, 1, kMarkerTrain, 1.2});
    }
    draw_legend(*pls, legend, PL_POSITION_BOTTOM | PL_POSITION_RIGHT);
  }
  out.commit();
}

void plot_reliability(const std::string& png_path, const std::vector<double>& confidence_before,
                      const std::vector<double>& fraction_before, double ece_before,
                      const std::vector<double>& confidence_after, const std::vector<double>& fraction_after,
                      double ece_after) {
  NN_CHECK(confidence_before.size() == fraction_before.size() && confidence_after.size() == fraction_after.size(),
           "plot_reliability: confidence and fraction differ in size");
  std::lock_guard<std::mutex> lock(plplot_mutex());
  check_device("pngcairo");
  AtomicOutput out(png_path);
  {
    std::unique_ptr<plstream> pls = open_stream(out.tmp(), 600, 600, 1.0);
    const double lo = -0.01, hi = 1.01;
    pls->vpor(0.14, 0.95, 0.11, 0.92);
    pls->wind(lo, hi, lo, hi);
    draw_axes(*pls, 0.2, 2, 0.2, 2);
    pls->col0(kBlack);
    pls->mtex("b", 2.8, 0.5, 0.5, "Predicted probability of PNEUMONIA (bin mean)");
    pls->mtex("l", 3.6, 0.5, 0.5, "Fraction with PNEUMONIA");
    text_scale(*pls, 1.15);
    pls->mtex("t", 1.2, 0.5, 0.5, "Reliability (out-of-fold predictions)");
    text_scale(*pls, 1.0);
    draw_lines(*pls, make_series({0.0, 1.0}, {0.0, 1.0}), kGray, 1.5, 2);
    Series before = make_series(confidence_before, fraction_before);
    Series after = make_series(confidence_after, fraction_after);
    draw_lines(*pls, before, kRed, 1.5, 1);
    draw_markers(*pls, before, kRed, kMarkerVal, 0.8);
    draw_lines(*pls, after, kBlue, 2.5, 1);
    draw_markers(*pls, after, kBlue, kMarkerTrain, 0.8);
    draw_legend(*pls,
                {{"Before calibration (ECE " + format("%.3f", ece_before) + ")", kRed, 1, 1.5, kMarkerVal, 0.8},
                 {"After (ECE " + format("%.3f", ece_after) + ")", kBlue, 1, 2.5, kMarkerTrain, 0.8},
                 {"Perfect calibration", kGray, 2, 1.5, nullptr, 1}},
                PL_POSITION_BOTTOM | PL_POSITION_RIGHT);
  }
  out.commit();
}

}  // namespace pneumonia
