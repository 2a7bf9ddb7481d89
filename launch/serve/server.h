#pragma once
// `tess serve`: the HTTP side (cpp-httplib) over serve::Engine. Routes, the
// API key check, server-sent events, the embedded page (launch/serve/page.html)
// and the orderly stop: stop accepting (503), finish what was accepted, exit.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "launch/serve/engine.h"

namespace tess::serve {

struct ServeOptions {
  EngineOptions engine;
  std::string host = "127.0.0.1";
  int port = 8000;             // 0: any free port
  std::string api_key;         // empty: no key needed
  std::string name;            // the model id requests name; default: the --model path as given
  int64_t steps = 100;         // request defaults
  int64_t max_tokens = 64;
  double top_p = 0.99;
  size_t max_body_bytes = size_t{1} << 20;
};

class Server {
 public:
  explicit Server(ServeOptions options);  // loads the model
  ~Server();
  // Binds and serves on background threads; returns the port.
  int start();
  // Stops accepting (new requests get 503), finishes every accepted request,
  // then closes the listener and joins the threads.
  void shutdown();
  const std::string& model_id() const { return options_.name; }
  const std::string& host() const { return options_.host; }
  Engine& engine() { return *engine_; }

 private:
  struct Http;
  ServeOptions options_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<Http> http_;
};

// The embedded page (generated from launch/serve/page.html at build time).
extern const char* const kPageHtml;

// The CLI: serves until SIGTERM or SIGINT, then shuts down in order; returns the exit code.
int run_server(ServeOptions options);

}  // namespace tess::serve
