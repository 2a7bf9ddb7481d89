#include "launch/serve/server.h"

#include <pthread.h>
#include <sys/socket.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>

#include <fmt/format.h>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "core/util/error.h"

namespace tess::serve {

using nlohmann::json;

namespace {

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  if (e.status == 429) res.set_header("Retry-After", "1");
  res.set_content(dump(error_json(e)), "application/json");
}

// Writes `text` to the event stream; false when the client has gone.
bool write(httplib::DataSink& sink, const std::string& text) { return sink.write(text.data(), text.size()); }

}  // namespace

struct Server::Http {
  httplib::Server svr;
  std::thread thread;
  std::atomic<bool> accepting{true};
  // Event streams still being written: httplib stops writing them once its
  // listener closes, so shutdown() waits for them first.
  std::atomic<int64_t> open_streams{0};
};

Server::Server(ServeOptions options) : options_(std::move(options)) {
  if (options_.name.empty()) options_.name = options_.engine.model.string();
  if (options_.max_tokens < 1) throw Error(fmt::format("--max-tokens must be >= 1, got {}", options_.max_tokens));
  if (options_.steps < 1) throw Error(fmt::format("--steps must be >= 1, got {}", options_.steps));
  if (!(options_.top_p >= 0 && options_.top_p <= 1)) throw Error(fmt::format("--top-p must be in [0, 1], got {}", options_.top_p));
  engine_ = std::make_unique<Engine>(options_.engine);
  if (options_.max_tokens >= engine_->max_positions())
    throw Error(fmt::format("--max-tokens {} leaves no room for a prompt within the model's {} positions",
                            options_.max_tokens, engine_->max_positions()));
  http_ = std::make_unique<Http>();
}

Server::~Server() {
  if (http_ && http_->thread.joinable()) shutdown();
}

int Server::start() {
  auto& svr = http_->svr;
  const auto limits = engine_->limits(options_.steps, options_.max_tokens, options_.top_p);
  const std::string id = options_.name;
  // Every request in flight holds a thread (streams are written from it): the batch, the queue and some spare.
  const auto threads = static_cast<size_t>(options_.engine.max_batch + options_.engine.max_queue + 8);
  svr.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  svr.set_payload_max_length(options_.max_body_bytes);
  svr.set_keep_alive_timeout(2);  // an idle kept-alive connection also delays shutdown this long
  svr.set_keep_alive_max_count(1000);
  svr.set_read_timeout(30);

  svr.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (options_.api_key.empty() || req.path == "/" || req.path == "/health") return httplib::Server::HandlerResponse::Unhandled;
    if (authorized(req.get_header_value("Authorization"), options_.api_key))
      return httplib::Server::HandlerResponse::Unhandled;
    send_error(res, ApiError(401, "Incorrect API key provided: send the server's --api-key as 'Authorization: Bearer KEY'",
                             "", "invalid_api_key"));
    return httplib::Server::HandlerResponse::Handled;
  });
  svr.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    engine_->metrics().request(req.path, res.status);
  });
  svr.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    std::string message = res.status == 404   ? fmt::format("no such endpoint: {} {}", req.method, req.path)
                          : res.status == 413 ? "the request body is too large (the server's limit is 1 MiB)"
                                              : fmt::format("HTTP {}", res.status);
    res.set_content(dump(error_json(ApiError(res.status, message))), "application/json");
  });
  svr.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    spdlog::error("tess serve: {}", what);
    send_error(res, ApiError(500, fmt::format("internal error: {}", what)));
  });

  svr.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(kPageHtml, "text/html; charset=utf-8");
  });
  svr.Get("/health", [this, id](const httplib::Request&, httplib::Response& res) {
    json j = {{"status", http_->accepting ? "ok" : "draining"},
              {"model", id},
              {"running", engine_->running()},
              {"waiting", engine_->waiting()}};
    res.set_content(dump(j), "application/json");
  });
  svr.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(engine_->metrics().text(engine_->running(), engine_->waiting()), "text/plain; version=0.0.4");
  });
  svr.Get("/v1/models", [id](const httplib::Request&, httplib::Response& res) {
    static const int64_t created = std::chrono::duration_cast<std::chrono::seconds>(
                                       std::chrono::system_clock::now().time_since_epoch())
                                       .count();
    json j = {{"object", "list"},
              {"data", {{{"id", id}, {"object", "model"}, {"created", created}, {"owned_by", "tess"}}}}};
    res.set_content(dump(j), "application/json");
  });
  auto completion = [this, limits, id](Endpoint endpoint) {
    return [this, limits, id, endpoint](const httplib::Request& req, httplib::Response& res) {
      try {
        if (!http_->accepting) throw ApiError(503, "the server is shutting down and accepts no new requests");
        auto request = parse_request(endpoint, req.body, limits);
        if (request.model != id)
          throw ApiError(404, fmt::format("The model '{}' does not exist: this server serves '{}'", request.model, id),
                         "model", "model_not_found");
        auto job = engine_->submit(std::move(request), id);
        if (!job->request.stream) {
          job->wait();
          if (!job->error().empty()) throw ApiError(500, job->error());
          res.set_content(dump(response_json(endpoint, job->head, job->outcome())), "application/json");
          return;
        }
        res.set_header("Cache-Control", "no-cache");
        ++http_->open_streams;
        res.set_chunked_content_provider(
            "text/event-stream",
            [job, endpoint](size_t, httplib::DataSink& sink) {
              StepEvent event;
              bool ok = true;
              if (job->next(event, std::chrono::milliseconds(1000))) {
                ok = write(sink, "data: " + dump(step_chunk(endpoint, job->head, event)) + "\n\n");
              } else if (!job->finished()) {
                ok = write(sink, ": waiting\n\n");  // SSE comment: notices a client that has gone
              } else {
                if (!job->error().empty()) {
                  ok = write(sink, "data: " + dump(error_json(ApiError(500, job->error()))) + "\n\n");
                } else {
                  for (const auto& chunk : final_chunks(job->request, job->head, job->outcome()))
                    ok = ok && write(sink, "data: " + dump(chunk) + "\n\n");
                }
                ok = ok && write(sink, "data: [DONE]\n\n");
                if (ok) sink.done();
              }
              if (!ok) job->cancel();
              return ok;
            },
            [this, job](bool) {
              if (!job->finished()) job->cancel();  // the client went away: free its rows
              --http_->open_streams;
            });
      } catch (const ApiError& e) {
        send_error(res, e);
      }
    };
  };
  svr.Post("/v1/chat/completions", completion(Endpoint::Chat));
  svr.Post("/v1/completions", completion(Endpoint::Completion));
  for (const char* path : {"/v1/chat/completions", "/v1/completions"})
    svr.Get(path, [](const httplib::Request& req, httplib::Response& res) {
      send_error(res, ApiError(405, fmt::format("{} takes POST with a JSON body, not {}", req.path, req.method)));
    });

  // Our own listening-socket options: SO_REUSEADDR (a restart binds at once)
  // but not httplib's default SO_REUSEPORT, which would let a second server
  // share the port silently; and the fd, to raise the backlog below.
  auto listen_fd = std::make_shared<int>(-1);
  svr.set_socket_options([listen_fd](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    *listen_fd = sock;
  });
  int port = options_.port;
  if (port == 0) {
    port = svr.bind_to_any_port(options_.host);
    if (port < 0) throw Error(fmt::format("tess serve: cannot bind {} (any port)", options_.host));
  } else if (!svr.bind_to_port(options_.host, port)) {
    throw Error(fmt::format("tess serve: cannot bind {}:{} (in use, or not an address of this machine?)", options_.host,
                            port));
  }
  // Debian's compiled httplib listens with a backlog of 5: a burst of clients
  // (while the CPU is busy denoising) would overflow it and see resets.
  if (*listen_fd >= 0) ::listen(*listen_fd, 1024);
  http_->thread = std::thread([this] { http_->svr.listen_after_bind(); });
  while (!svr.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  return port;
}

void Server::shutdown() {
  http_->accepting = false;
  engine_->drain();
  // The finished jobs' last events are still being written; a client that
  // stopped reading gets 30 s.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (http_->open_streams > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  if (http_->open_streams > 0)
    spdlog::warn("tess serve: {} event stream(s) still unread after 30 s; closing", http_->open_streams.load());
  http_->svr.stop();
  if (http_->thread.joinable()) http_->thread.join();
}

int run_server(ServeOptions options) {
  // Signals are taken by sigwait below: blocked before any thread starts, so
  // every thread inherits the mask and none is interrupted.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a client that went away is a failed write, not a dead server
  Server server(std::move(options));
  int port = server.start();
  const std::string& host = server.host();
  std::printf("tess serve: listening on http://%s:%d (model %s)\n", host.c_str(), port, server.model_id().c_str());
  std::fflush(stdout);
  int sig = 0;
  sigwait(&set, &sig);
  spdlog::info("tess serve: {} received: finishing {} running and {} waiting request(s), accepting no more",
               sig == SIGTERM ? "SIGTERM" : "SIGINT", server.engine().running(), server.engine().waiting());
  server.shutdown();
  spdlog::info("tess serve: stopped");
  return 0;
}

}  // namespace tess::serve
