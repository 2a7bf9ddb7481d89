// `tess bench serve`: a bounded loopback load test of `tess serve` -- the real
// server (serve::Server, its HTTP threads, engine and continuous batching) in
// this process, `clients` client threads each sending `requests` chat
// requests one after another. Checks what a load test must: every request
// answered exactly once (no loss, no duplicate id), 429 only when the queue
// was full, and every answer equal to the same request served alone
// afterwards (same seed); reports latency percentiles, tokens/s and peak
// resident memory.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "core/util/error.h"
#include "launch/bench/bench.h"
#include "launch/serve/server.h"

namespace tess::bench {

using nlohmann::json;

namespace {

struct Answer {
  int status = 0;
  std::string error;  // why there is no answer (transport error or the error body)
  std::string id, text;
  int64_t tokens = 0;
  double seconds = 0;
};

const char* const kPrompts[] = {"What is 2 + 3?", "Name a colour.", "Write one word about the sea.",
                                "Count to three.", "What is the capital of France?", "Say hello.",
                                "Give a number between 1 and 9.", "What do cats eat?"};

json request_body(const std::string& model, const ServeBench& b, int64_t k) {
  return {{"model", model},
          {"messages", {{{"role", "user"}, {"content", kPrompts[k % 8]}}}},
          {"max_tokens", b.max_tokens},
          {"steps", b.steps},
          {"seed", k}};
}

Answer post(httplib::Client& client, const json& body) {
  Answer a;
  auto t0 = std::chrono::steady_clock::now();
  auto res = client.Post("/v1/chat/completions", body.dump(), "application/json");
  a.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!res) {  // status 0: no answer at all
    a.error = httplib::to_string(res.error());
    return a;
  }
  a.status = res->status;
  if (a.status != 200) a.error = res->body.substr(0, 300);
  if (a.status == 200) {
    auto j = json::parse(res->body);
    a.id = j["id"].get<std::string>();
    a.text = j["choices"][0]["message"]["content"].get<std::string>();
    a.tokens = j["usage"]["completion_tokens"].get<int64_t>();
  }
  return a;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  auto i = static_cast<size_t>(std::min<double>(static_cast<double>(v.size() - 1), p * static_cast<double>(v.size())));
  return v[i];
}

}  // namespace

json bench_serve(const BenchOptions& opt, const ServeBench& b) {
  if (b.clients < 1 || b.requests < 1) throw Error("bench serve: --clients and --requests must be >= 1");
  serve::ServeOptions so;
  so.engine.model = b.model;
  so.engine.max_batch = b.max_batch;
  so.engine.max_queue = b.max_queue;
  so.engine.device = opt.device == "cuda" ? "cuda" : "cpu";
  so.port = 0;
  so.name = "bench";
  serve::Server server(so);
  int port = server.start();
  const int64_t total = b.clients * b.requests;
  std::vector<Answer> answers(static_cast<size_t>(total));
  std::atomic<int64_t> rejected{0};
  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> clients;
  for (int64_t c = 0; c < b.clients; ++c) {
    clients.emplace_back([&, c] {
      httplib::Client client("127.0.0.1", port);
      client.set_read_timeout(600);
      client.set_keep_alive(true);  // one connection per client, as HTTP client libraries keep it
      for (int64_t r = 0; r < b.requests; ++r) {
        int64_t k = c * b.requests + r;
        auto a = post(client, request_body("bench", b, k));
        while (a.status == 429) {  // a well-behaved client honours Retry-After
          ++rejected;
          std::this_thread::sleep_for(std::chrono::milliseconds(200));
          a = post(client, request_body("bench", b, k));
        }
        answers[static_cast<size_t>(k)] = a;
      }
    });
  }
  for (auto& t : clients) t.join();
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  auto metrics = server.engine().metrics().text(0, 0);

  // Every request once more, alone, with the same seed.
  int64_t mismatched = 0;
  {
    httplib::Client client("127.0.0.1", port);
    client.set_read_timeout(600);
    for (int64_t k = 0; k < total; ++k) {
      auto alone = post(client, request_body("bench", b, k));
      if (alone.status != 200 || alone.text != answers[static_cast<size_t>(k)].text) ++mismatched;
    }
  }
  server.shutdown();

  int64_t ok = 0, failed = 0, tokens = 0;
  json failures = json::array();
  std::set<std::string> ids;
  std::vector<double> latency;
  for (const auto& a : answers) {
    if (a.status == 200) {
      ++ok;
      ids.insert(a.id);
      tokens += a.tokens;
      latency.push_back(a.seconds);
    } else {
      ++failed;
      if (failures.size() < 5) failures.push_back({{"status", a.status}, {"error", a.error}, {"seconds", a.seconds}});
    }
  }
  json out = {{"config",
               {{"model", b.model.string()},
                {"clients", b.clients},
                {"requests_per_client", b.requests},
                {"max_tokens", b.max_tokens},
                {"steps", b.steps},
                {"max_batch", b.max_batch},
                {"max_queue", b.max_queue}}},
              {"requests", total},
              {"answered", ok},
              {"failed", failed},
              {"failures", failures},  // the first few, with why
              {"duplicate_ids", ok - static_cast<int64_t>(ids.size())},
              {"rejected_429", rejected.load()},
              {"mismatched_alone", mismatched},
              {"seconds", wall},
              {"requests_per_s", static_cast<double>(ok) / wall},
              {"completion_tokens", tokens},
              {"tokens_per_s", static_cast<double>(tokens) / wall},
              {"latency_p50_s", percentile(latency, 0.5)},
              {"latency_p99_s", percentile(latency, 0.99)},
              {"peak_rss_bytes", peak_resident_bytes()}};
  // The mean batch the engine ran (from its own metrics).
  auto at = metrics.find("\ntess_mean_batch_rows ");
  if (at != std::string::npos) out["mean_batch_rows"] = std::stod(metrics.substr(at + 22));
  return out;
}

}  // namespace tess::bench
