// pneumonia-serve: the pneumonia web app's HTTP server.
//
//   pneumonia-serve --model RUN_DIR/model.safetensors [--port 8080] [--host 127.0.0.1] [--threads N]
//                   [--device cpu|cuda] [--max-body-mib 16] [--queue 64] [--read-timeout-s 10] ...
//
// Threads: --threads request workers (default: 2 x --max-batch, at least one per hardware thread) decode the uploads and
// encode the heatmaps, one core each; the model runs on --batchers batching threads (default: 2 on
// a CPU with two or more hardware threads, else 1), each with its own copy of the model, which give
// every request queued at that moment - up to --max-batch per batch - one forward and one Grad-CAM
// backward pass (common/explain_batcher.h). A lone request runs on all --compute-threads (default:
// every hardware thread); under load each batch runs on its share of them, side by side.
// Loads the model once per batching thread (read only from then on) and serves
//   GET  /             the page (examples/pneumonia/web/index.html, embedded at build time)
//   GET  /api/health   {"status":"ok","model":...,"classes":[...],"input_size":N,"threshold":T,"device":...,
//                       "members":K,"ood_gate":...,"model_card":true|false,
//                       "images_explained":N,"batches":B}  (N / B: the mean batch size so far)
//   GET  /model-card   the model card (Markdown, as text/plain), from --card or, without it,
//                      model_card.md beside the model file when there is one (pneumonia-predict
//                      --eval DIR --card writes it); 404 when there is none
//   POST /api/predict  multipart/form-data with one file field "image" (JPEG or PNG) ->
//                      {"label","probability","threshold","heatmap" (base64 PNG of the Grad-CAM map
//                       blended over the X-ray, at the upload's size),"model","elapsed_ms","width","height",
//                       "ood_score"}, or, when the out-of-distribution gate (common/ood_gate.h) refuses
//                      the image, {"label":"REJECTED","reason","model","elapsed_ms","width","height"}
// Errors are JSON {"error": "..."} with 400/404/405/413/414/431/503/500. Uploads are decoded from
// memory only; nothing a client sends is written to disk. The HTTP machinery and its limits are in
// common/http_server.h. Prints "listening on http://HOST:PORT" once ready (port 0 picks a free
// port); SIGINT/SIGTERM stop it. Exit codes: 0 stopped by a signal, 1 startup failure, 2 usage.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <nn/data/image.h>
#include <nn/explain.h>
#include <nn/nn.h>
#include <nn/parallel.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "explain_batcher.h"
#include "http_server.h"
#include "multipart.h"
#include "pneumonia_model.h"
#include "pneumonia_web_page.h"

using json = nlohmann::json;
namespace web = pneumonia::http;

namespace {

std::string base64(const std::vector<uint8_t>& data) {
  static const char* table = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out((data.size() + 2) / 3 * 4, '=');
  char* o = out.data();
  size_t i = 0;
  for (; i + 2 < data.size(); i += 3, o += 4) {
    const uint32_t v = (uint32_t(data[i]) << 16) | (uint32_t(data[i + 1]) << 8) | data[i + 2];
    o[0] = table[v >> 18];
    o[1] = table[(v >> 12) & 63];
    o[2] = table[(v >> 6) & 63];
    o[3] = table[v & 63];
  }
  if (i < data.size()) {  // one or two bytes left: their '=' padding is already there
    const uint32_t v = (uint32_t(data[i]) << 16) | (i + 1 < data.size() ? uint32_t(data[i + 1]) << 8 : 0u);
    o[0] = table[v >> 18];
    o[1] = table[(v >> 12) & 63];
    if (i + 1 < data.size()) o[2] = table[(v >> 6) & 63];
  }
  return out;
}

std::vector<uint8_t> heatmap_png(const nn::data::Image& rgb) { return nn::data::encode_png(rgb, 1); }

web::Response json_response(int status, const json& body) { return {status, "application/json", body.dump(), {}}; }
web::Response error_response(int status, const std::string& message) {
  return {status, "application/json", web::json_error(message), {}};
}
web::Response method_not_allowed(const std::string& method, const std::string& path, const char* allowed) {
  web::Response r = error_response(405, "method " + method + " is not allowed on " + path + " (allowed: " + allowed + ")");
  r.headers.emplace_back("Allow", allowed);
  return r;
}

struct App {
  pneumonia::PneumoniaModel loaded;
  nn::data::Preprocessing preset;
  nn::Device device = nn::Device::cpu();
  std::string device_name, model_name;
  nn::data::ImageLimits limits;
  std::vector<std::unique_ptr<pneumonia::PneumoniaModel>> copies;  // one per extra batching thread
  std::unique_ptr<pneumonia::ExplainBatcher> batcher;
  std::string card;  // the model card's Markdown ("" when there is none)

  web::Response handle(const web::Request& req) {
    if (req.path == "/" || req.path == "/index.html") {
      if (req.method != "GET") return method_not_allowed(req.method, req.path, "GET");
      return {200, "text/html; charset=utf-8",
              std::string(reinterpret_cast<const char*>(pneumonia::kWebPage), pneumonia::kWebPageSize), {}};
    }
    if (req.path == "/api/health") {
      if (req.method != "GET") return method_not_allowed(req.method, req.path, "GET");
      const pneumonia::ModelSpec& spec = loaded.spec;
      return json_response(200, {{"status", "ok"}, {"model", model_name}, {"classes", spec.classes},
                                 {"input_size", spec.input_size}, {"threshold", spec.threshold},
                                 {"device", device_name}, {"members", spec.members},
                                 {"ood_gate", loaded.gate.has_features() ? "input checks + feature distance"
                                                                         : "input checks only"},
                                 {"model_card", !card.empty()},
                                 {"images_explained", batcher->images()}, {"batches", batcher->batches()}});
    }
    if (req.path == "/model-card") {
      if (req.method != "GET") return method_not_allowed(req.method, req.path, "GET");
      if (card.empty()) return error_response(404, "this server has no model card (pneumonia-serve --card FILE)");
      return {200, "text/plain; charset=utf-8", card, {}};
    }
    if (req.path == "/api/predict") {
      if (req.method != "POST") return method_not_allowed(req.method, req.path, "POST");
      return predict(req);
    }
    return error_response(404, "no such path: " + req.path.substr(0, 200) + " (try /, /api/health, /api/predict)");
  }

  web::Response predict(const web::Request& req) {
    const auto start = std::chrono::steady_clock::now();
    std::vector<web::MultipartPart> parts;
    try {
      parts = web::parse_multipart(req.body, req.content_type);
    } catch (const web::MultipartError& e) {
      return error_response(400, e.what());
    }
    const web::MultipartPart* image = nullptr;
    size_t files = 0, images = 0;
    for (const web::MultipartPart& p : parts) {
      if (p.has_filename) ++files;
      if (p.name == "image") {
        ++images;
        image = &p;
      }
    }
    if (images == 0) return error_response(400, "missing field 'image': upload a JPEG or PNG chest X-ray as form field 'image'");
    if (files > 1 || images > 1)
      return error_response(400, "expected exactly one file (field 'image'), got " + std::to_string(std::max(files, images)));
    if (image->filename.find_first_of("/\\") != std::string::npos || image->filename.find("..") != std::string::npos ||
        std::any_of(image->filename.begin(), image->filename.end(), [](unsigned char c) { return c < 0x20 || c == 0x7f; }))
      return error_response(400, "the file name of 'image' must be a plain name (no path, no control characters)");
    if (image->data.empty()) return error_response(400, "the uploaded file 'image' is empty");

    nn::data::Image decoded;
    try {
      decoded = nn::data::decode_image(image->data.data(), image->data.size(), "uploaded image", limits);
    } catch (const nn::Error& e) {
      return error_response(400, std::string("cannot use the uploaded image: ") + e.what());
    }
    const pneumonia::ModelSpec& spec = loaded.spec;
    auto elapsed_ms = [&] {
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
      return std::round(ms * 10) / 10;
    };
    // A refusal (the out-of-distribution gate) is an answer: 200, no probability, no heatmap.
    auto refused = [&](const std::string& reason, int64_t width, int64_t height) {
      return json_response(200, {{"label", "REJECTED"}, {"reason", reason}, {"model", model_name},
                                 {"elapsed_ms", elapsed_ms()}, {"width", width}, {"height", height}});
    };
    const std::string input_problem = pneumonia::check_input(pneumonia::input_stats(decoded), loaded.gate.input);
    if (!input_problem.empty()) return refused(input_problem, decoded.width, decoded.height);
    // As pneumonia::prepare_xray: grayscale, squashed to the model's square input.
    nn::data::Image gray = nn::data::to_grayscale(decoded);
    decoded = {};
    nn::data::Image small = (gray.height == spec.input_size && gray.width == spec.input_size)
                                ? gray
                                : nn::data::resize(gray, spec.input_size, spec.input_size);
    nn::Tensor input = pneumonia::xray_to_input(small, preset).unsqueeze(0).to(device);
    const pneumonia::Explained result = batcher->explain(input);
    if (result.assessment.refused) return refused(result.assessment.reason, gray.width, gray.height);
    const double probability = result.assessment.probability;
    std::vector<uint8_t> png = heatmap_png(nn::explain::colorize_blend(result.cam.heatmap, gray, 0.4));
    const bool positive = probability >= spec.threshold;
    json answer = {{"label", spec.classes[positive ? 1 : 0]}, {"probability", probability},
                   {"threshold", spec.threshold}, {"model", model_name},
                   {"elapsed_ms", elapsed_ms()}, {"width", gray.width}, {"height", gray.height}};
    if (std::isfinite(result.assessment.ood_score)) answer["ood_score"] = result.assessment.ood_score;
    // The heatmap's base64 (tens of kilobytes, nothing to escape) is appended as it is: the JSON
    // serializer would copy it character by character.
    std::string body = answer.dump();
    body.pop_back();  // the closing brace
    body += ",\"heatmap\":\"" + base64(png) + "\"}";
    return {200, "application/json", std::move(body), {}};
  }
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{"pneumonia-serve: the pneumonia web app (page + JSON API) over HTTP"};
  std::string model_path, card_path, device = "cpu";
  web::ServerOptions options;
  int port = 8080, threads = 0, compute_threads = 0, max_requests = 100;
  int64_t max_batch = 16;
  int batchers = 0;
  double max_body_mib = 16, read_timeout_s = 10, write_timeout_s = 30;
  int64_t max_pixels = 16'000'000, max_side = 10'000;
  size_t queue = 64, max_connections = 512;
  cli.add_option("--model", model_path, "model.safetensors written by pneumonia-train")->required();
  cli.add_option("--card", card_path, "the model card to serve at /model-card (default: model_card.md beside the model, if any)");
  cli.add_option("--port", port, "TCP port (0: a free one, printed)")->check(CLI::Range(0, 65535));
  cli.add_option("--host", options.host, "address to listen on (default 127.0.0.1: this machine only)");
  cli.add_option("--threads", threads, "worker threads answering requests (default: 2 x --max-batch, at least the hardware threads)")
      ->check(CLI::Range(0, 256));
  cli.add_option("--compute-threads", compute_threads, "nn compute threads of the batching thread (default: the hardware threads)")
      ->check(CLI::Range(0, 256));
  cli.add_option("--max-batch", max_batch, "most requests in one forward/backward pass")->check(CLI::Range(1, 1024));
  cli.add_option("--batchers", batchers,
                 "batching threads, each with its own copy of the model (default: 2 on a CPU with 2+ hardware threads, else 1)")
      ->check(CLI::Range(0, 64));
  cli.add_option("--device", device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  cli.add_option("--max-body-mib", max_body_mib, "largest request body in MiB")->check(CLI::Range(0.001, 1024.0));
  cli.add_option("--queue", queue, "requests waiting for a worker before 503")->check(CLI::Range(1, 100000));
  cli.add_option("--read-timeout-s", read_timeout_s, "seconds to receive one request (headers + body)")
      ->check(CLI::Range(0.1, 3600.0));
  cli.add_option("--write-timeout-s", write_timeout_s, "seconds to send one response")->check(CLI::Range(0.1, 3600.0));
  cli.add_option("--max-connections", max_connections, "open connections at once")->check(CLI::Range(1, 100000));
  cli.add_option("--max-requests-per-connection", max_requests, "keep-alive requests per connection")
      ->check(CLI::Range(1, 1000000));
  cli.add_option("--max-pixels", max_pixels, "largest uploaded image in pixels")->check(CLI::Range(1, 100'000'000));
  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = cli.exit(e);
    return code == 0 ? 0 : 2;
  }

  try {
    const int hw = std::max(1u, std::thread::hardware_concurrency());
    // Workers mostly wait for the batching thread, so there are enough of them for a full batch to
    // wait while the next batch's images are decoded (measured 2026-12-07, 32 clients: 2 workers
    // gave 67 requests/s, 32 gave 104, bench/results/serve-latency-2026-12-07*.json).
    if (threads <= 0) threads = std::max<int>(hw, static_cast<int>(2 * max_batch));
    if (compute_threads <= 0) compute_threads = hw;
    nn::set_num_threads(compute_threads);

    App app;
    app.loaded = pneumonia::load_model(model_path);
    app.loaded.fold_batch_norms();  // inference only: the same outputs up to rounding, faster
    nn::set_conv_weight_cache(true);  // the weights stay as loaded: transform them once
    app.preset = nn::data::parse_preprocessing(app.loaded.spec.preprocessing);
    app.model_name = std::filesystem::path(model_path).filename().string();
    {
      std::error_code ec;
      const std::string beside = (std::filesystem::path(model_path).parent_path() / "model_card.md").string();
      const std::string path = !card_path.empty() ? card_path : (std::filesystem::is_regular_file(beside, ec) ? beside : "");
      if (!path.empty()) {
        std::ifstream in(path, std::ios::binary);
        NN_CHECK(in.good(), "cannot read the model card ", path);
        std::ostringstream text;
        text << in.rdbuf();
        app.card = text.str();
        NN_CHECK(!app.card.empty() && app.card.size() <= (size_t{1} << 20), "the model card ", path,
                 " is empty or over 1 MiB");
      }
    }
    app.device_name = device;
    app.device = device == "cuda" ? nn::Device::cuda() : nn::Device::cpu();
    app.loaded.to(app.device);
    // Two batching threads on the CPU: measured 2026-12-07 (docs/web_app.md), 32 clients, 119-142
    // requests/s against 95-104 with one.
    if (batchers <= 0) batchers = device == "cpu" && hw >= 2 ? 2 : 1;
    std::vector<pneumonia::PneumoniaModel*> copies = {&app.loaded};
    for (int b = 1; b < batchers; ++b) {
      app.copies.push_back(std::make_unique<pneumonia::PneumoniaModel>(pneumonia::load_model(model_path)));
      app.copies.back()->fold_batch_norms();
      app.copies.back()->to(app.device);
      copies.push_back(app.copies.back().get());
    }
    app.batcher = std::make_unique<pneumonia::ExplainBatcher>(copies, max_batch, compute_threads);
    app.limits.max_pixels = max_pixels;
    app.limits.max_side = max_side;
    NN_CHECK(app.loaded.spec.classes.size() == 2, "the model has ", app.loaded.spec.classes.size(), " classes, expected 2");

    options.port = static_cast<uint16_t>(port);
    options.worker_threads = threads;
    options.queue_capacity = queue;
    options.max_body_bytes = static_cast<uint64_t>(max_body_mib * 1024 * 1024);
    options.read_timeout = std::chrono::milliseconds(static_cast<int64_t>(read_timeout_s * 1000));
    options.write_timeout = std::chrono::milliseconds(static_cast<int64_t>(write_timeout_s * 1000));
    options.max_connections = max_connections;
    options.max_requests_per_connection = max_requests;
    options.common_headers = {
        {"X-Content-Type-Options", "nosniff"},
        {"Content-Security-Policy",
         "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'"},
        {"Referrer-Policy", "no-referrer"},
    };
    web::HttpServer server(options, [&app](const web::Request& r) {
      nn::set_this_thread_num_threads(1);  // a worker's image work on its own core; the model runs batched
      return app.handle(r);
    });
    server.listen();
    std::printf("model %s, %d workers, %d batching thread%s, batches of up to %lld on %d compute threads, device %s, queue %zu, body limit %.0f MiB\n",
                app.model_name.c_str(), threads, batchers, batchers == 1 ? "" : "s", static_cast<long long>(max_batch), compute_threads, device.c_str(), queue,
                max_body_mib);
    std::printf("listening on http://%s:%u\n", options.host.c_str(), static_cast<unsigned>(server.port()));
    std::fflush(stdout);
    server.run();
    std::printf("stopped\n");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pneumonia-serve: %s\n", e.what());
    return 1;
  }
}
