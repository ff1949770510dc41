// The bounded Boost.Beast HTTP server: see http_server.h for the design and the limits.
#include "http_server.h"

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace pneumonia::http {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

std::string json_error(const std::string& message) {
  std::string out = "{\"error\":\"";
  for (unsigned char c : message) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"}";
}

namespace {

// A fixed pool of threads fed by a bounded queue; try_submit refuses work when the queue is full.
class WorkerPool {
 public:
  WorkerPool(int threads, size_t capacity) : capacity_(capacity) {
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { loop(); });
  }
  ~WorkerPool() { stop(); }

  bool try_submit(std::function<void()> job) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopping_ || queue_.size() >= capacity_) return false;
      queue_.push_back(std::move(job));
    }
    cv_.notify_one();
    return true;
  }

  // Lets running jobs finish, drops the queued ones, joins the threads.
  void stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (std::thread& t : threads_)
      if (t.joinable()) t.join();
    threads_.clear();
    std::deque<std::function<void()>> dropped;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      dropped.swap(queue_);
    }
  }

 private:
  void loop() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (stopping_) return;
        job = std::move(queue_.front());
        queue_.pop_front();
      }
      job();  // jobs catch their own exceptions
    }
  }

  size_t capacity_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  std::vector<std::thread> threads_;
  bool stopping_ = false;
};

const char* const kContinue = "HTTP/1.1 100 Continue\r\n\r\n";

}  // namespace

struct HttpServer::Impl : std::enable_shared_from_this<HttpServer::Impl> {
  ServerOptions options;
  Handler handler;
  net::io_context ioc;
  tcp::acceptor acceptor{ioc};
  net::signal_set signals{ioc, SIGINT, SIGTERM};
  std::unique_ptr<WorkerPool> pool;
  std::atomic<size_t> connections{0};
  uint16_t bound_port = 0;

  Impl(ServerOptions o, Handler h) : options(std::move(o)), handler(std::move(h)) {}
  void accept();
};

namespace {

// One connection: read a request (bounded), queue it for a worker, write the answer, repeat.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, std::shared_ptr<HttpServer::Impl> server)
      : stream_(std::move(socket)), server_(std::move(server)), options_(server_->options) {
    ++server_->connections;
  }
  ~Session() { --server_->connections; }

  void start(bool over_capacity) {
    auto self = shared_from_this();
    net::dispatch(stream_.get_executor(), [self, over_capacity] {
      if (over_capacity)
        self->send_error(503, "server busy: too many open connections, try again later");
      else
        self->read_request();
    });
  }

 private:
  void read_request() {
    parser_.emplace();
    parser_->header_limit(options_.max_header_bytes);
    parser_->body_limit(options_.max_body_bytes);
    stream_.expires_after(options_.read_timeout);
    bhttp::async_read_header(stream_, buffer_, *parser_,
                             [self = shared_from_this()](beast::error_code ec, size_t) { self->on_header(ec); });
  }

  // The status and message for a read error, or 0 when the connection should just be closed.
  int classify(const beast::error_code& ec, std::string& message) const {
    if (ec == bhttp::error::end_of_stream || ec == beast::error::timeout || ec == net::error::eof ||
        ec == net::error::connection_reset || ec == net::error::operation_aborted)
      return 0;  // the client went away or stalled: nothing to answer
    if (ec == bhttp::error::body_limit) {
      message = "request body too large (at most " + std::to_string(options_.max_body_bytes) + " bytes)";
      return 413;
    }
    if (ec == bhttp::error::header_limit || ec == bhttp::error::buffer_overflow) {
      message = "request line and headers too large (at most " + std::to_string(options_.max_header_bytes) + " bytes)";
      return 431;
    }
    message = "malformed HTTP request: " + ec.message();
    return 400;
  }

  void on_header(beast::error_code ec) {
    if (ec) return fail(ec);
    const auto& req = parser_->get();
    size_t fields = 0;
    for (auto it = req.begin(); it != req.end(); ++it) ++fields;
    if (fields > options_.max_header_fields)
      return send_error(431, "too many request headers (" + std::to_string(fields) + ", at most " +
                                 std::to_string(options_.max_header_fields) + ")");
    if (req.target().size() > options_.max_target_bytes)
      return send_error(414, "request target too long (at most " + std::to_string(options_.max_target_bytes) + " bytes)");
    if (beast::iequals(req[bhttp::field::expect], "100-continue")) {
      net::async_write(stream_, net::buffer(kContinue, std::char_traits<char>::length(kContinue)),
                       [self = shared_from_this()](beast::error_code ec2, size_t) {
                         if (ec2) return self->close();
                         self->read_body();
                       });
      return;
    }
    read_body();
  }

  void read_body() {
    bhttp::async_read(stream_, buffer_, *parser_,
                      [self = shared_from_this()](beast::error_code ec, size_t) { self->on_body(ec); });
  }

  void fail(const beast::error_code& ec) {
    std::string message;
    int status = classify(ec, message);
    if (status == 0) return close();
    send_error(status, message);
  }

  void on_body(beast::error_code ec) {
    if (ec) return fail(ec);
    stream_.expires_never();  // waiting for a worker is bounded by the queue, not by the client
    bhttp::request<bhttp::string_body> msg = parser_->release();
    parser_.reset();
    auto request = std::make_shared<Request>();
    request->method = std::string(msg.method_string());
    request->target = std::string(msg.target());
    request->path = request->target.substr(0, request->target.find('?'));
    request->content_type = std::string(msg[bhttp::field::content_type]);
    request->body = std::move(msg.body());
    ++served_;
    const bool keep_alive = msg.keep_alive() && served_ < options_.max_requests_per_connection;

    auto self = shared_from_this();
    auto server = server_;
    const bool queued = server_->pool->try_submit([self, server, request, keep_alive] {
      auto response = std::make_shared<Response>();
      try {
        *response = server->handler(*request);
      } catch (const std::exception& e) {
        *response = Response{500, "application/json", json_error(std::string("internal error: ") + e.what()), {}};
      } catch (...) {
        *response = Response{500, "application/json", json_error("internal error"), {}};
      }
      net::post(self->stream_.get_executor(), [self, response, keep_alive] { self->write(*response, keep_alive); });
    });
    if (!queued) {
      Response busy{503, "application/json", json_error("server busy: the request queue is full, try again later"),
                    {{"Retry-After", "1"}}};
      write(busy, keep_alive);
    }
  }

  void send_error(int status, const std::string& message) {
    write(Response{status, "application/json", json_error(message), {}}, false);
  }

  void write(const Response& r, bool keep_alive) {
    response_ = {};
    response_.version(11);
    response_.result(static_cast<unsigned>(r.status));
    response_.set(bhttp::field::server, "pneumonia-serve");
    response_.set(bhttp::field::content_type, r.content_type);
    for (const auto& [k, v] : options_.common_headers) response_.set(k, v);
    if (r.content_type.rfind("application/json", 0) == 0) response_.set(bhttp::field::cache_control, "no-store");
    for (const auto& [k, v] : r.headers) response_.set(k, v);
    response_.body() = r.body;
    response_.keep_alive(keep_alive);
    response_.prepare_payload();
    stream_.expires_after(options_.write_timeout);
    bhttp::async_write(stream_, response_, [self = shared_from_this(), keep_alive](beast::error_code ec, size_t) {
      if (ec) return self->close();
      self->response_ = {};
      if (keep_alive)
        self->read_request();
      else
        self->graceful_close();
    });
  }

  // Shut our side down, then read and discard what the client still sends (an upload we refused)
  // for up to 2 s, so that it reads our answer rather than a connection reset.
  void graceful_close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.expires_after(std::chrono::seconds(2));
    drain();
  }

  void drain() {
    stream_.async_read_some(net::buffer(scratch_), [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec) return self->close();
      self->drain();
    });
  }

  void close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
  }

  beast::tcp_stream stream_;
  std::shared_ptr<HttpServer::Impl> server_;
  const ServerOptions& options_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  bhttp::response<bhttp::string_body> response_;
  int served_ = 0;
  char scratch_[16384];
};

}  // namespace

void HttpServer::Impl::accept() {
  acceptor.async_accept(net::make_strand(ioc), [self = shared_from_this()](beast::error_code ec, tcp::socket socket) {
    if (ec == net::error::operation_aborted || !self->acceptor.is_open()) return;
    if (!ec) {
      const bool over = self->connections.load() >= self->options.max_connections;
      std::make_shared<Session>(std::move(socket), self)->start(over);
    }
    self->accept();  // accept errors (e.g. out of file descriptors) do not stop the server
  });
}

HttpServer::HttpServer(ServerOptions options, Handler handler)
    : impl_(std::make_shared<Impl>(std::move(options), std::move(handler))) {}

HttpServer::~HttpServer() { stop(); }

void HttpServer::listen() {
  Impl& s = *impl_;
  const std::string where = s.options.host + ":" + std::to_string(s.options.port);
  try {
    tcp::resolver resolver(s.ioc);
    auto results = resolver.resolve(s.options.host, std::to_string(s.options.port),
                                    tcp::resolver::passive | tcp::resolver::numeric_service);
    if (results.empty()) throw std::runtime_error("no address");
    tcp::endpoint endpoint = results.begin()->endpoint();
    s.acceptor.open(endpoint.protocol());
    s.acceptor.set_option(net::socket_base::reuse_address(true));
    s.acceptor.bind(endpoint);
    s.acceptor.listen(net::socket_base::max_listen_connections);
    s.bound_port = s.acceptor.local_endpoint().port();
  } catch (const std::exception& e) {
    throw std::runtime_error("cannot listen on " + where + ": " + e.what());
  }
}

uint16_t HttpServer::port() const { return impl_->bound_port; }

void HttpServer::run() {
  Impl& s = *impl_;
  s.pool = std::make_unique<WorkerPool>(std::max(1, s.options.worker_threads), s.options.queue_capacity);
  s.signals.async_wait([impl = impl_](beast::error_code ec, int) {
    if (!ec) impl->ioc.stop();
  });
  s.accept();
  std::vector<std::thread> io;
  for (int i = 1; i < std::max(1, s.options.io_threads); ++i) io.emplace_back([&s] { s.ioc.run(); });
  s.ioc.run();
  s.ioc.stop();
  for (std::thread& t : io) t.join();
  beast::error_code ignored;
  s.acceptor.close(ignored);
  s.pool->stop();
}

void HttpServer::stop() {
  if (impl_) impl_->ioc.stop();
}

}  // namespace pneumonia::http
