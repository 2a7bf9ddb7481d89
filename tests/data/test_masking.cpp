#include <catch2/catch.hpp>

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/config/config.h"
#include "core/util/error.h"
#include "core/util/rng.h"
#include "data/masking.h"
#include "tests/support/test_support.h"

using namespace tess::data;
using Catch::Matchers::Contains;
using tess::util::Rng;

using tess::test::run_command;

namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const tess::Error& e) {
    return e.what();
  }
  FAIL("expected a tess::Error");
  return "";
}

// Runs of 1s in a row: their lengths.
std::vector<int64_t> span_lengths(const uint8_t* row, int64_t length) {
  std::vector<int64_t> out;
  for (int64_t i = 0; i < length;) {
    if (!row[i]) {
      ++i;
      continue;
    }
    int64_t j = i;
    while (j < length && row[j]) ++j;
    out.push_back(j - i);
    i = j;
  }
  return out;
}

int index_of(const SpanMasker& m, const std::string& name) {
  const auto& objs = m.options().objectives;
  for (size_t i = 0; i < objs.size(); ++i)
    if (objs[i].name == name) return static_cast<int>(i);
  FAIL("no objective " << name);
  return -1;
}

}  // namespace

TEST_CASE("UL2 defaults are the six objectives of the contract", "[unit][data]") {
  auto o = Ul2Options::defaults();
  CHECK(o.variant == Ul2Variant::Reference);
  CHECK(SpanMasker::reference_noise_tokens(64, 0.15) == 9);  // floor, where tess_v1 rounds to 10
  CHECK(SpanMasker::num_noise_tokens(64, 0.15) == 10);
  CHECK(SpanMasker::reference_num_spans(64, 0.15, 8) == 1);
  std::map<std::string, std::pair<double, double>> expected = {{"t5_short", {0.15, 3}},  {"t5_long", {0.15, 8}},
                                                               {"extreme_3", {0.5, 3}},  {"extreme_8", {0.5, 8}},
                                                               {"extreme_48", {0.5, 48}}};
  REQUIRE(o.objectives.size() == 6);
  CHECK(o.weights.empty());
  int prefixes = 0;
  for (const auto& obj : o.objectives) {
    if (obj.prefix) {
      CHECK(obj.name == "prefix_lm");
      CHECK(obj.max_prefix_ratio == 1.0);
      ++prefixes;
      continue;
    }
    INFO(obj.name);
    REQUIRE(expected.count(obj.name));
    CHECK(obj.mask_ratio == expected[obj.name].first);
    CHECK(obj.mean_span == expected[obj.name].second);
  }
  CHECK(prefixes == 1);
  // Counts: N = round(L * r) clamped to [1, L-1], n = round(N / mean) clamped to [1, min(N, L-N)].
  CHECK(SpanMasker::num_noise_tokens(512, 0.15) == 77);
  CHECK(SpanMasker::num_spans(512, 0.15, 3) == 26);
  CHECK(SpanMasker::num_noise_tokens(512, 0.5) == 256);
  CHECK(SpanMasker::num_spans(512, 0.5, 48) == 5);
  CHECK(SpanMasker::num_noise_tokens(4, 0.15) == 1);
  CHECK(SpanMasker::num_noise_tokens(4, 1.0) == 3);
  CHECK(SpanMasker::num_spans(4, 1.0, 1) == 1);  // at most L - N = 1 span
  CHECK_THAT(error_of([] { Ul2Options::objective("t5_huge"); }), Contains("unknown UL2 objective 't5_huge'"));
}

TEST_CASE("tess_v1: each UL2 objective has its mask ratio and mean span length, and position 0 stays clean",
          "[unit][data]") {
  SpanMasker masker(Ul2Options::defaults(Ul2Variant::TessV1));
  const int64_t L = 1024, B = 8, batches = 40;
  for (const auto& obj : masker.options().objectives) {
    if (obj.prefix) continue;
    INFO(obj.name);
    Rng rng(11, "span_mask");
    const int64_t noise = SpanMasker::num_noise_tokens(L, obj.mask_ratio);
    const int64_t spans = SpanMasker::num_spans(L, obj.mask_ratio, obj.mean_span);
    int64_t total_noise = 0, total_spans = 0, last_noised = 0;
    std::vector<int64_t> per_position(static_cast<size_t>(L), 0);
    for (int64_t k = 0; k < batches; ++k) {
      auto m = masker.batch_for(index_of(masker, obj.name), B, L, rng);
      REQUIRE(m.batch == B);
      REQUIRE(m.length == L);
      REQUIRE(m.objective == obj.name);
      for (int64_t b = 0; b < B; ++b) {
        const uint8_t* row = m.row(b);
        REQUIRE(row[0] == 0);
        REQUIRE(m.count(b) == noise);  // exact count per row
        auto runs = span_lengths(row, L);
        REQUIRE(static_cast<int64_t>(runs.size()) == spans);  // spans never touch
        total_noise += m.count(b);
        total_spans += static_cast<int64_t>(runs.size());
        last_noised += row[L - 1];
        for (int64_t i = 0; i < L; ++i) per_position[static_cast<size_t>(i)] += row[i];
      }
    }
    double ratio = static_cast<double>(total_noise) / static_cast<double>(batches * B * L);
    double mean_span = static_cast<double>(total_noise) / static_cast<double>(total_spans);
    CHECK(std::abs(ratio - obj.mask_ratio) < 0.01);
    CHECK(std::abs(mean_span - obj.mean_span) / obj.mean_span < 0.1);
    // Spans land everywhere: the last token is noised sometimes but not always,
    // and the noise rate of each tenth of the sequence is close to the ratio.
    CHECK(last_noised > 0);
    CHECK(last_noised < batches * B);
    for (int64_t part = 0; part < 10; ++part) {
      int64_t lo = std::max<int64_t>(1, part * L / 10), hi = (part + 1) * L / 10, sum = 0;
      for (int64_t i = lo; i < hi; ++i) sum += per_position[static_cast<size_t>(i)];
      double rate = static_cast<double>(sum) / static_cast<double>((hi - lo) * batches * B);
      INFO("tenth " << part << " rate " << rate);
      CHECK(std::abs(rate - obj.mask_ratio) < 0.5 * obj.mask_ratio);
    }
  }
}

TEST_CASE("the span length distribution of a T5-style objective averages the mean over many spans", "[unit][data]") {
  // L = 200 at 15% / mean 3: N = 30, n = 10; individual span lengths vary.
  Rng rng(5, "span_mask");
  std::vector<uint8_t> row(200);
  std::map<int64_t, int64_t> histogram;
  int64_t spans = 0, tokens = 0;
  for (int k = 0; k < 500; ++k) {
    SpanMasker::random_spans(200, 0.15, 3.0, rng, row.data());
    for (int64_t s : span_lengths(row.data(), 200)) {
      ++histogram[s];
      ++spans;
      tokens += s;
    }
  }
  CHECK(spans == 5000);
  CHECK(tokens == 15000);
  CHECK(histogram.size() >= 6);         // lengths 1..6+ all occur
  CHECK(histogram[1] > histogram[5]);   // short spans are the most common (compositions)
}

TEST_CASE("tess_v1: prefix_lm keeps a random prefix of 1..L-2 tokens clean", "[unit][data]") {
  SpanMasker masker(Ul2Options::defaults(Ul2Variant::TessV1));
  const int idx = index_of(masker, "prefix_lm");
  const int64_t L = 8;
  Rng rng(3, "span_mask");
  std::map<int64_t, int64_t> prefixes;
  for (int k = 0; k < 300; ++k) {
    auto m = masker.batch_for(idx, 4, L, rng);
    for (int64_t b = 0; b < 4; ++b) {
      const uint8_t* row = m.row(b);
      int64_t p = 0;
      while (p < L && row[p] == 0) ++p;
      for (int64_t i = p; i < L; ++i) REQUIRE(row[i] == 1);  // one clean prefix, then all noised
      ++prefixes[p];
    }
  }
  REQUIRE(prefixes.size() == static_cast<size_t>(L - 2));
  CHECK(prefixes.begin()->first == 1);
  CHECK(prefixes.rbegin()->first == L - 2);
  for (const auto& [p, n] : prefixes) CHECK(std::abs(static_cast<double>(n) - 1200.0 / 6) < 60);

  // max_prefix_ratio limits the range (the reference draws about up to L/2).
  Ul2Options half;
  half.variant = Ul2Variant::TessV1;
  half.objectives = {Ul2Options::objective("prefix_lm")};
  half.objectives[0].max_prefix_ratio = 0.5;
  SpanMasker h(half);
  int64_t max_seen = 0;
  for (int k = 0; k < 600; ++k) {
    auto m = h.train_batch(1, 100, rng);
    int64_t p = 0;
    while (m.at(0, p) == 0) ++p;
    max_seen = std::max(max_seen, p);
    CHECK(p >= 1);
  }
  CHECK(max_seen == 50);
}

TEST_CASE("eval masks are a fixed half-length prefix: the reference's 1 + floor((L-1)/2), tess_v1's floor(L/2)",
          "[unit][data]") {
  // L -> clean prefix: reference, tess_v1 (equal at even L, one apart at odd L).
  for (auto [L, ref, v1] : {std::tuple<int64_t, int64_t, int64_t>{4, 2, 2}, {10, 5, 5}, {11, 6, 5}, {3, 2, 1},
                            {512, 256, 256}, {513, 257, 256}}) {
    INFO(L);
    for (auto [variant, prefix] : {std::pair{Ul2Variant::Reference, ref}, std::pair{Ul2Variant::TessV1, v1}}) {
      auto m = SpanMasker::eval_batch(3, L, variant);
      CHECK(m.objective == "eval_prefix");
      CHECK(m.objective_index == -1);
      for (int64_t b = 0; b < 3; ++b)
        for (int64_t i = 0; i < L; ++i) CHECK(m.at(b, i) == (i >= prefix ? 1 : 0));
    }
  }
}

TEST_CASE("tess_v1: objectives are drawn once per batch with equal chance, or by weight", "[unit][data]") {
  SpanMasker masker(Ul2Options::defaults(Ul2Variant::TessV1));
  Rng rng(21, "span_mask");
  std::map<std::string, int> seen;
  const int n = 6000;
  for (int k = 0; k < n; ++k) {
    auto m = masker.train_batch(2, 16, rng);
    ++seen[m.objective];
    REQUIRE(masker.options().objectives[static_cast<size_t>(m.objective_index)].name == m.objective);
  }
  REQUIRE(seen.size() == 6);
  for (const auto& [name, count] : seen) {
    INFO(name);
    CHECK(std::abs(count - n / 6) < 120);  // ~4 sigma
  }

  Ul2Options w = Ul2Options::defaults();
  w.weights = {6, 3, 3, 0, 2, 2};  // extreme_8 never
  SpanMasker weighted(w);
  std::map<std::string, int> wseen;
  for (int k = 0; k < n; ++k) ++wseen[weighted.train_batch(1, 16, rng).objective];
  CHECK(wseen.count("extreme_8") == 0);
  CHECK(std::abs(wseen["prefix_lm"] - n * 6 / 16) < 160);
  CHECK(std::abs(wseen["t5_short"] - n * 3 / 16) < 130);
  CHECK(std::abs(wseen["extreme_48"] - n * 2 / 16) < 110);
}

TEST_CASE("every objective keeps its invariants on the shortest sequences, in both variants", "[unit][data]") {
  for (auto variant : {Ul2Variant::Reference, Ul2Variant::TessV1}) {
  SpanMasker masker(Ul2Options::defaults(variant));
  Rng rng(8, "span_mask");
  for (int64_t L : {3, 4, 5, 7}) {
    for (int idx = 0; idx < 6; ++idx) {
      INFO("L=" << L << " objective " << masker.options().objectives[static_cast<size_t>(idx)].name);
      for (int k = 0; k < 50; ++k) {
        auto m = masker.batch_for(idx, 2, L, rng);
        for (int64_t b = 0; b < 2; ++b) {
          CHECK(m.at(b, 0) == 0);
          CHECK(m.count(b) >= 1);
          CHECK(m.count(b) <= L - 1);
        }
      }
    }
  }
  CHECK_THAT(error_of([&] { masker.train_batch(1, 2, rng); }), Contains("at least 3 tokens"));
  }
}

// The default mixture is the reference's (data.ul2.variant: reference):
// tests/tools/ul2_reference.py re-states its functions in numpy; both draw
// 20,000 rows and their statistics agree within sampling error.
TEST_CASE("reference UL2: objective frequencies, noised-count histogram and prefix range match the reference's",
          "[unit][data]") {
  const int64_t L = 64;
  const int draws = 20000;
  auto r = run_command(fmt::format("'{}' '{}/../tools/ul2_reference.py' {} {} 7", TESS_PYTHON, TESS_TEST_DATA, L, draws));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  auto ref = nlohmann::json::parse(r.out);
  SpanMasker masker;  // the defaults: the reference variant
  REQUIRE(masker.options().variant == Ul2Variant::Reference);
  Rng rng(7, "span_mask");
  std::map<std::string, double> objective;
  std::map<int64_t, double> noised;
  int64_t prefix_min = L, prefix_max = 0;
  for (int k = 0; k < draws; ++k) {
    auto m = masker.train_batch(1, L, rng);
    objective[m.objective] += 1.0 / draws;
    noised[m.count(0)] += 1.0 / draws;
    REQUIRE(m.at(0, 0) == 0);
    if (m.objective == "prefix_lm") {
      prefix_min = std::min(prefix_min, L - m.count(0));
      prefix_max = std::max(prefix_max, L - m.count(0));
    } else {
      REQUIRE(m.at(0, L - 1) == 1);  // the reference's rows end with a noised span
    }
  }
  // 4.5 standard errors of a frequency p over `draws` (both sides sampled).
  auto close = [&](double a, double b) {
    double p = std::max((a + b) / 2, 1.0 / draws);
    return std::abs(a - b) <= 4.5 * std::sqrt(2 * p * (1 - p) / draws);
  };
  REQUIRE(ref["objective"].size() == 6);
  for (auto& [name, p] : ref["objective"].items()) {
    INFO(name << ": reference " << p.get<double>() << ", tess " << objective[name]);
    CHECK(close(p.get<double>(), objective[name]));
  }
  CHECK(std::abs(objective["prefix_lm"] - 1.0 / 3) < 0.015);  // not 1/6 as with equal chance
  std::set<int64_t> counts;
  for (auto& [k, p] : ref["noised"].items()) counts.insert(std::stoll(k));
  for (auto& [k, p] : noised) counts.insert(k);
  for (int64_t c : counts) {
    double a = ref["noised"].value(std::to_string(c), 0.0), b = noised.count(c) ? noised[c] : 0.0;
    INFO("noised " << c << ": reference " << a << ", tess " << b);
    CHECK(close(a, b));
  }
  CHECK(ref["prefix_clean"][0].get<int64_t>() == prefix_min);
  CHECK(ref["prefix_clean"][1].get<int64_t>() == prefix_max);
  CHECK(prefix_min == 2);  // the start token and at least one more
  CHECK(prefix_max == (L - 1) / 2);
}

TEST_CASE("span masks are deterministic under a seed and resume exactly from a saved Rng state", "[unit][data]") {
  SpanMasker masker;
  Rng a(99, "span_mask"), b(99, "span_mask"), other(100, "span_mask");
  for (int k = 0; k < 20; ++k) {
    auto ma = masker.train_batch(4, 64, a);
    auto mb = masker.train_batch(4, 64, b);
    CHECK(ma.objective == mb.objective);
    CHECK(ma.mask == mb.mask);
  }
  bool differs = false;
  Rng fresh(99, "span_mask");
  for (int k = 0; k < 20; ++k) differs |= masker.train_batch(4, 64, fresh).mask != masker.train_batch(4, 64, other).mask;
  CHECK(differs);

  // Save the stream after some batches; a new Rng restored from it continues
  // with exactly the masks the original draws next.
  Rng run(7, "span_mask");
  for (int k = 0; k < 13; ++k) masker.train_batch(3, 128, run);
  auto state = run.state();
  std::vector<SpanMaskBatch> expected;
  for (int k = 0; k < 10; ++k) expected.push_back(masker.train_batch(3, 128, run));
  Rng resumed(7, "span_mask");
  resumed.set_state(state);
  for (int k = 0; k < 10; ++k) {
    auto m = masker.train_batch(3, 128, resumed);
    CHECK(m.objective == expected[static_cast<size_t>(k)].objective);
    CHECK(m.mask == expected[static_cast<size_t>(k)].mask);
  }
}

TEST_CASE("UL2 options come from the config keys and are validated", "[unit][data]") {
  auto cfg = tess::config::Config::load_string(
      "run:\n  stage: adaptation\ndata:\n  ul2:\n    objectives: [t5_short, prefix_lm]\n    weights: [3, 1]\n    t5_short:\n      mean_span: 5\n",
      "test.yaml", {"data.ul2.prefix_lm.max_prefix_ratio=0.25", "data.ul2.extreme_3.mask_ratio=0.4"}, ".");
  auto o = Ul2Options::from_config(cfg);
  REQUIRE(o.objectives.size() == 2);
  CHECK(o.objectives[0].name == "t5_short");
  CHECK(o.objectives[0].mask_ratio == 0.15);
  CHECK(o.objectives[0].mean_span == 5.0);
  CHECK(o.objectives[1].name == "prefix_lm");
  CHECK(o.objectives[1].max_prefix_ratio == 0.25);
  CHECK(o.weights == std::vector<double>{3, 1});
  // A parameter of an objective that is not in the mixture is never read: the
  // run reports it as unused.
  auto unused = cfg.unused_user_keys();
  CHECK(std::find(unused.begin(), unused.end(), "data.ul2.extreme_3.mask_ratio") != unused.end());
  CHECK(std::find(unused.begin(), unused.end(), "data.ul2.t5_short.mean_span") == unused.end());

  auto bad = tess::config::Config::load_string("run:\n  stage: adaptation\ndata:\n  ul2:\n    weights: [1, 2]\n", "bad.yaml", {}, ".");
  CHECK_THAT(error_of([&] { Ul2Options::from_config(bad); }), Contains("data.ul2.weights has 2 value(s)"));
  Ul2Options none;
  CHECK_THAT(error_of([&] { SpanMasker{none}; }), Contains("at least one objective"));
  Ul2Options zero = Ul2Options::defaults();
  zero.weights.assign(6, 0.0);
  CHECK_THAT(error_of([&] { SpanMasker{zero}; }), Contains("sum to 0"));
  Ul2Options short_span = Ul2Options::defaults();
  short_span.objectives[1].mean_span = 0.5;
  CHECK_THAT(error_of([&] { SpanMasker{short_span}; }), Contains("mean_span must be >= 1"));
}

TEST_CASE("a mask batch converts to a bool tensor [B, L]", "[unit][data]") {
  SpanMasker masker;
  Rng rng(1, "span_mask");
  auto m = masker.train_batch(3, 32, rng);
  auto t = to_tensor(m);
  CHECK(t.dtype() == torch::kBool);
  CHECK(t.sizes() == torch::IntArrayRef({3, 32}));
  for (int64_t b = 0; b < 3; ++b) {
    CHECK(t[b].sum().item<int64_t>() == m.count(b));
    for (int64_t i = 0; i < 32; ++i) CHECK(t[b][i].item<bool>() == (m.at(b, i) == 1));
  }
}
