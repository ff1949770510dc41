// A small, bounded HTTP/1.1 server on Boost.Beast for pneumonia-serve.
//
// Design: all network I/O is asynchronous on a few I/O threads (default 1), so a slow or idle
// client costs a socket and a few kilobytes, never a thread. A complete request (headers and body
// read within the read timeout, under every limit) is handed to a fixed pool of worker threads
// through a bounded queue; when the queue is full the client gets 503 at once. The handler's
// Response is written back asynchronously under the write timeout. Everything a client can make
// the server hold is bounded:
//   - request line + headers: header_limit bytes (Beast's parser) -> 431; more than max_header_fields
//     fields -> 431; a request target longer than max_target_bytes -> 414;
//   - body: a Content-Length above max_body_bytes -> 413 before the body is read; a chunked body is
//     counted as it arrives and cut at the limit -> 413 (nothing over the limit is buffered);
//   - time: read_timeout for one request's headers + body (also the keep-alive idle time), then the
//     connection is closed; write_timeout for a response;
//   - connections: max_connections open at once (more get 503 and are closed); keep-alive up to
//     max_requests_per_connection requests.
// Errors found by the server itself are JSON {"error": "..."} answers followed by a graceful close
// (our side shut down, the rest of the client's upload read and discarded for up to 2 s, so the
// client sees the answer instead of a connection reset). A handler that throws gets a 500 JSON
// answer; the server goes on.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace pneumonia::http {

struct Request {
  std::string method;        // "GET", "POST", ...
  std::string target;        // as sent: "/api/predict?x=1"
  std::string path;          // the target without its query
  std::string content_type;  // the Content-Type header, empty when absent
  std::string body;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers
};

// Runs on a worker thread; may throw (-> 500).
using Handler = std::function<Response(const Request&)>;

struct ServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 8080;                  // 0: a free port (see HttpServer::port)
  int io_threads = 1;
  int worker_threads = 2;
  size_t queue_capacity = 64;            // requests waiting for a worker
  uint64_t max_body_bytes = 16ull << 20;
  uint32_t max_header_bytes = 16 * 1024; // request line + headers
  size_t max_header_fields = 100;
  size_t max_target_bytes = 4096;
  std::chrono::milliseconds read_timeout{10'000};
  std::chrono::milliseconds write_timeout{30'000};
  int max_requests_per_connection = 100;
  size_t max_connections = 512;
  // Added to every response (e.g. security headers).
  std::vector<std::pair<std::string, std::string>> common_headers;
};

// {"error": message} with the message JSON-escaped.
std::string json_error(const std::string& message);

class HttpServer {
 public:
  HttpServer(ServerOptions options, Handler handler);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Resolves the host, binds and listens; throws std::runtime_error naming the address on failure.
  void listen();
  // The bound port (after listen; the real one when options.port was 0).
  uint16_t port() const;
  // Serves until SIGINT or SIGTERM (or stop()), then stops accepting, stops the threads and returns.
  void run();
  // Thread-safe; makes run() return.
  void stop();

  struct Impl;  // internal (public only so that the connection code in http_server.cpp can name it)

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace pneumonia::http
