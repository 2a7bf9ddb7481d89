// Readable tables of a bench report (the JSON stays the record).
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "launch/bench/bench.h"

namespace tess::bench {
using json = nlohmann::json;

namespace {

std::string gf(double v) { return fmt::format("{:.1f}", v); }

std::string machine_table(const json& r) {
  std::string s;
  const auto& m = r["machine"];
  s += fmt::format("machine: {} ({} cores), torch threads {}, load average {:.2f} {:.2f} {:.2f}{}\n",
                   m.value("cpu", "?"), m.value("cores", 0), m.value("torch_threads", 0),
                   m["load_average"][0].get<double>(), m["load_average"][1].get<double>(),
                   m["load_average"][2].get<double>(), m.value("smoke", false) ? "  [SMOKE: figures mean nothing]" : "");
  return s;
}

std::string peak_table(const json& r) {
  std::string s;
  const auto& p = r["peak"];
  s += fmt::format("\npeak matmul ({} threads, {})\n{:>6} {:>12} {:>12}\n", p["threads"].get<int>(),
                   p["method"].get<std::string>(), "n", "fp32 GF/s", "bf16 GF/s");
  for (size_t i = 0; i < p["fp32"]["by_size"].size(); ++i)
    s += fmt::format("{:>6} {:>12} {:>12}\n", p["fp32"]["by_size"][i]["n"].get<int64_t>(),
                     gf(p["fp32"]["by_size"][i]["gflops"].get<double>()), gf(p["bf16"]["by_size"][i]["gflops"].get<double>()));
  s += fmt::format("{:>6} {:>12} {:>12}\n", "best", gf(p["fp32"]["gflops"].get<double>()), gf(p["bf16"]["gflops"].get<double>()));
  return s;
}

std::string train_table(const json& r) {
  std::string s;
  s += fmt::format("\ntraining step (MFU against the measured peak of the case's precision)\n");
  s += fmt::format("{:<26} {:>4} {:>5} {:>4} {:>9} {:>8} {:>6} {:>7} {:>7} {:>6} | {:>5} {:>5} {:>5} {:>5} {:>5} {:>5} | {:>8} {:>8} {:>8} {:>6}\n",
                   "case", "B", "L", "thr", "tok/s", "step s", "spread", "GF/s", "peak", "MFU", "data", "noise", "fwd", "sc",
                   "bwd", "opt", "RSS MB", "vs plan", "tensors", "eager");
  for (const auto& c : r["train"]["cases"]) {
    if (c.contains("skipped")) {
      s += fmt::format("{:<26} {}\n", c["case"].get<std::string>(), c["skipped"].get<std::string>());
      continue;
    }
    const auto& b = c["breakdown_s"];
    double st = c["step_s"].get<double>();
    auto pct = [&](const char* k) { return fmt::format("{:.0f}%", 100 * b[k].get<double>() / st); };
    std::string eager = c.contains("eager_over_tess") ? fmt::format("{:.2f}x", c["eager_over_tess"].get<double>()) : "-";
    s += fmt::format("{:<26} {:>4} {:>5} {:>4} {:>9.0f} {:>8.3f} {:>5.0f}% {:>7} {:>7} {:>5.1f}% | {:>5} {:>5} {:>5} {:>5} {:>5} {:>5} | {:>8.0f} {:>7.2f}x {:>7.2f}x {:>6}\n",
                     c["case"].get<std::string>(), c["batch"].get<int64_t>(), c["seq_len"].get<int64_t>(),
                     c["threads"].get<int>(), c["tokens_per_s"].get<double>(), st,
                     100 * c.value("pair_spread", 0.0), gf(c["achieved_gflops"].get<double>()),
                     gf(c["peak_gflops"].get<double>()), 100 * c["mfu"].get<double>(), pct("data"), pct("noise"),
                     pct("forward"), pct("self_condition"), pct("backward"), pct("optimizer"),
                     c["peak_rss_bytes"].get<double>() / 1e6, c["rss_over_plan"].get<double>(),
                     c.value("tensors_over_plan", 0.0), eager);
  }
  s += "(spread = slowest - fastest pair of timed steps over the mean; breakdown in % of step time; vs plan = peak RSS above the process before the model / tess plan's estimate;\n"
       " tensors = peak of live tensor bytes / tess plan's estimate, the rest of the RSS is the allocator's and the libraries' buffers;\n"
       " eager = plain eager PyTorch step time / tess step time, > 1: tess faster)\n";
  if (r["train"].contains("bf16_support")) s += fmt::format("bf16: {}\n", r["train"]["bf16_support"].get<std::string>());
  return s;
}

std::string sample_table(const json& r) {
  std::string s;
  const auto& p = r["sample"];
  s += fmt::format("\nsampling: preset {} (H {}, {} layers, V {}), prompt {} + span {}, batch 1, {} threads\n",
                   p["preset"].get<std::string>(), p["hidden"].get<int64_t>(), p["layers"].get<int64_t>(),
                   p["vocab"].get<int64_t>(), p["prompt_tokens"].get<int64_t>(), p["span"].get<int64_t>(),
                   p["threads"].get<int>());
  s += fmt::format("AR with KV cache: {:.1f} tokens/s ({:.2f} s)\n{:>6} {:>10} {:>10} {:>10}\n",
                   p["ar"]["tokens_per_s"].get<double>(), p["ar"]["seconds"].get<double>(), "steps", "seconds",
                   "tokens/s", "vs AR");
  for (const auto& c : p["diffusion"])
    s += fmt::format("{:>6} {:>10.3f} {:>10.1f} {:>9.2f}x\n", c["steps"].get<int64_t>(), c["seconds"].get<double>(),
                     c["tokens_per_s"].get<double>(), c["speedup_vs_ar"].get<double>());
  if (p.contains("prompt_cache")) {
    const auto& c = p["prompt_cache"];
    s += fmt::format("prompt cache, prompt {} + span {}: full pass {:.1f} ms, span-only pass {:.1f} ms ({:.0f}% saved);",
                     c["prompt_tokens"].get<int64_t>(), c["span"].get<int64_t>(), 1e3 * c["full_pass_s"].get<double>(),
                     1e3 * c["span_only_pass_s"].get<double>(), 100 * c["step_time_saved"].get<double>());
    for (const auto& x : c["sampling"])
      s += fmt::format(" 32 steps r={} {:.2f} s", x["cache_refresh"].get<int64_t>(), x["seconds"].get<double>());
    s += "\n";
  }
  if (p.contains("step")) {
    const auto& st = p["step"];
    s += fmt::format("one step: forward {:.1f} ms ({:.2f} GFLOP, {:.1f} GF/s), top-p choice {:.1f} ms (argmax {:.1f}), "
                     "re-noising {:.1f} ms\n",
                     1e3 * st["forward_s"].get<double>(), st["forward_gflops"].get<double>(),
                     st["forward_achieved_gflops"].get<double>(), 1e3 * st["choose_top_p_s"].get<double>(),
                     1e3 * st["choose_argmax_s"].get<double>(), 1e3 * st["renoise_s"].get<double>());
  }
  return s;
}

std::string sample_grid_table(const json& r) {
  const auto& g = r["sample_grid"];
  std::string s = fmt::format("\nsampling on {} ({} prompts of {}, span {}, top-p {}, {} threads; AR: {})\n",
                              g["model"].get<std::string>(), g["prompts"].get<int64_t>(), g["data"].get<std::string>(),
                              g["span"].get<int64_t>(), g["top_p"].get<double>(), g["threads"].get<int>(),
                              g["ar_model"].get<std::string>());
  s += fmt::format("{:>5} {:<40} {:>8} {:>10} {:>9} {:>12} {:>8}\n", "batch", "setting", "exact", "mean steps",
                   "seconds", "answer tok/s", "vs AR");
  for (const auto& row : g["rows"]) {
    s += fmt::format("{:>5} {:<40} {:>8.3f} {:>10} {:>9.2f} {:>12.1f} {:>8}\n", row["batch"].get<int64_t>(),
                     row["setting"].get<std::string>(), row["exact_match"].get<double>(),
                     row.contains("mean_steps") ? fmt::format("{:.1f}", row["mean_steps"].get<double>()) : "-",
                     row["seconds"].get<double>(), row["answer_tokens_per_s"].get<double>(),
                     row.contains("speedup_vs_ar") ? fmt::format("{:.2f}x", row["speedup_vs_ar"].get<double>()) : "-");
  }
  s += "(vs AR = AR seconds / these seconds for the same prompts at the same batch size; answer tokens = up to the first EOS)\n";
  return s;
}

std::string data_table(const json& r) {
  std::string s;
  const auto& d = r["data"];
  s += fmt::format("\ndata loader (B {}, L {}, packing + UL2 masks, {} threads): {:.0f} tokens/s, {:.3f} ms/batch, "
                   "prefetch wait {:.3f} ms/batch\n",
                   d["batch"].get<int64_t>(), d["seq_len"].get<int64_t>(), d["threads"].get<int>(),
                   d["loader_tokens_per_s"].get<double>(), 1e3 * d["loader_batch_s"].get<double>(),
                   1e3 * d["prefetch_wait_per_batch_s"].get<double>());
  if (d.contains("trainer_tokens_per_s"))
    s += fmt::format("trainer ({}) consumes {:.0f} tokens/s: loader is {:.0f}x faster; synchronous loading would be "
                     "{:.2f}% of step time\n",
                     d["trainer_case"].get<std::string>(), d["trainer_tokens_per_s"].get<double>(),
                     d["loader_over_trainer"].get<double>(), 100 * d["stall_share_without_prefetch"].get<double>());
  return s;
}

std::string checkpoint_table(const json& r) {
  std::string s;
  const auto& c = r["checkpoint"];
  s += fmt::format("\ncheckpoint ({} model, safetensors; {})\n{:<16} {:>10} {:>10} {:>10}\n",
                   c["preset"].get<std::string>(), c["note"].get<std::string>(), "", "MB", "save GB/s", "load GB/s");
  for (const char* k : {"weights", "optimizer_state"})
    s += fmt::format("{:<16} {:>10.1f} {:>10.2f} {:>10.2f}\n", k, c[k]["bytes"].get<double>() / 1e6,
                     c[k]["save_gb_per_s"].get<double>(), c[k]["load_gb_per_s"].get<double>());
  if (c.contains("save_stall_in_steps"))
    s += fmt::format("synchronous save: {:.2f} steps of {}\n", c["save_stall_in_steps"].get<double>(),
                     c["trainer_case"].get<std::string>());
  if (c.contains("async")) {
    const auto& a = c["async"];
    s += fmt::format("asynchronous save ({:.0f} MB snapshot, deferred copy): steps with it in flight {:.3f} s against "
                     "{:.3f} s interleaved without = {:+.1f}% ({:.3f} s waiting for the copy before the optimizer "
                     "step)\n",
                     a["snapshot_bytes"].get<double>() / 1e6, a["step_s"].get<double>(),
                     a["plain_step_s"].get<double>(), 100 * c["async_stall_in_steps"].get<double>(),
                     a["copy_wait_s"].get<double>());
  }
  return s;
}

std::string dist_table(const json& r) {
  std::string s;
  const auto& d = r["dist"];
  auto row = [&](const json& j) {
    return fmt::format("{:>3} proc x {} thr: {:.3f} s/step (compute {:.3f}, all-reduce wait {:.3f}, optimizer {:.3f}), "
                       "{:.0f} tokens/s\n",
                       j["world_size"].get<int>(), j["threads_per_process"].get<int>(), j["step_s"].get<double>(),
                       j["compute_s"].get<double>(), j["all_reduce_s"].get<double>(), j["optimizer_s"].get<double>(),
                       j["tokens_per_s"].get<double>());
  };
  s += fmt::format("\ndata parallel (small/adaptation, global batch {}, Gloo)\n", d["one_process"]["global_batch"].get<int64_t>());
  s += row(d["one_process"]) + row(d["two_processes"]);
  if (d.contains("two_processes_overlapped")) s += "overlapped:" + row(d["two_processes_overlapped"]);
  s += fmt::format("scaling efficiency {:.2f}, overlapped {:.2f} ({})\n", d["efficiency"].get<double>(),
                   d.value("efficiency_overlapped", 0.0), d["note"].get<std::string>());
  return s;
}

std::string serve_table(const json& r) {
  const auto& v = r["serve"];
  const auto& c = v["config"];
  std::string s = fmt::format("\n== serve: {} clients x {} requests, {} tokens, {} steps, batch <= {}, queue <= {} ==\n",
                              c["clients"].get<int64_t>(), c["requests_per_client"].get<int64_t>(),
                              c["max_tokens"].get<int64_t>(), c["steps"].get<int64_t>(), c["max_batch"].get<int64_t>(),
                              c["max_queue"].get<int64_t>());
  s += fmt::format("answered {}/{}  failed {}  duplicate ids {}  429s {}  differ from alone {}\n",
                   v["answered"].get<int64_t>(), v["requests"].get<int64_t>(), v["failed"].get<int64_t>(),
                   v["duplicate_ids"].get<int64_t>(), v["rejected_429"].get<int64_t>(),
                   v["mismatched_alone"].get<int64_t>());
  s += fmt::format("{:.1f} s  {:.2f} req/s  {:.1f} tokens/s  latency p50 {:.3f} s  p99 {:.3f} s  mean batch {:.2f} rows  "
                   "peak RSS {:.0f} MB\n",
                   v["seconds"].get<double>(), v["requests_per_s"].get<double>(), v["tokens_per_s"].get<double>(),
                   v["latency_p50_s"].get<double>(), v["latency_p99_s"].get<double>(), v.value("mean_batch_rows", 0.0),
                   v["peak_rss_bytes"].get<double>() / 1e6);
  return s;
}

}  // namespace

std::string format_report(const json& r) {
  std::string s;
  if (r.contains("machine")) s += machine_table(r);
  if (r.contains("peak")) s += peak_table(r);
  if (r.contains("train")) s += train_table(r);
  if (r.contains("sample")) s += sample_table(r);
  if (r.contains("sample_grid")) s += sample_grid_table(r);
  if (r.contains("data")) s += data_table(r);
  if (r.contains("checkpoint")) s += checkpoint_table(r);
  if (r.contains("dist")) s += dist_table(r);
  if (r.contains("serve")) s += serve_table(r);
  return s;
}

}  // namespace tess::bench
