#include <catch2/catch.hpp>

#include <cstdio>

#include <pthread.h>
#include <sched.h>

#include <thread>

#include "core/util/cpu.h"
#include "core/util/format.h"
#include "core/util/progress.h"
#include "core/util/rng.h"
#include "core/util/error.h"

#include <torch/torch.h>
#include "core/util/sha256.h"
#include "tests/support/test_support.h"

using namespace tess::util;

TEST_CASE("rng: parallel standard normals are the same for any thread count and replay from the state",
          "[unit][util]") {
  const int threads = torch::get_num_threads();
  const int64_t n = 5 * Rng::kNormalChunk + 123;  // a partial last chunk
  auto draw = [&](int t, Rng& r) {
    torch::set_num_threads(t);
    auto z = torch::empty({n});
    r.fill_standard_normal(z.data_ptr<float>(), n);
    return z;
  };
  Rng a(7, "noise"), b(7, "noise");
  auto saved = a.state();
  auto one = draw(1, a), two = draw(2, b);
  torch::set_num_threads(threads);
  CHECK(torch::equal(one, two));
  // One draw of the stream per call: a copy that drew one u64 is where a is now.
  Rng c(7, "noise");
  c.next_u64();
  CHECK(c.next_u64() == a.next_u64());
  a.set_state(saved);
  CHECK(torch::equal(draw(threads, a), one));
  // Standard normal, and no chunk repeats another.
  CHECK(one.mean().item<double>() == Approx(0.0).margin(0.01));
  CHECK(one.std().item<double>() == Approx(1.0).margin(0.01));
  CHECK(std::abs(one.max().item<double>()) > 4.0);
  auto first = one.narrow(0, 0, 1000), second = one.narrow(0, Rng::kNormalChunk, 1000);
  CHECK_FALSE(torch::allclose(first, second));
  // Another call continues the stream with new values.
  CHECK_FALSE(torch::equal(draw(threads, a), one));
  torch::set_num_threads(threads);
}

TEST_CASE("sha256 matches the FIPS 180-2 test vectors", "[unit][util]") {
  CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  // Streaming in uneven pieces gives the same digest as one call.
  std::string million(1000000, 'a');
  Sha256 h;
  for (size_t i = 0; i < million.size(); i += 777) h.update(million.substr(i, 777));
  CHECK(h.hex_digest() == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  tess::test::TempDir dir;
  CHECK(sha256_file_hex(dir.write("f", "abc")) == sha256_hex("abc"));
}

TEST_CASE("human-readable numbers", "[unit][util]") {
  CHECK(human_count(950) == "950");
  CHECK(human_count(1234567) == "1.23M");
  CHECK(human_count(12345) == "12.3k");
  CHECK(human_duration(42) == "42s");
  CHECK(human_duration(187) == "3:07");
  CHECK(human_duration(3723) == "1:02:03");
  CHECK(human_duration(-1) == "?");
  CHECK(human_bytes(512) == "512 B");
  CHECK(human_bytes(1536) == "1.5 KiB");
}

TEST_CASE("progress prints plain lines with rate, ETA and fields when not a terminal", "[unit][util]") {
  tess::test::TempDir dir;
  auto path = dir / "progress.txt";
  std::FILE* f = std::fopen(path.c_str(), "w");
  double now = 0;
  {
    Progress::Options opt;
    opt.unit = "step";
    opt.out = f;
    opt.tty = false;
    opt.plain_interval_s = 5;
    opt.clock = [&] { return now; };
    Progress p("train", 100, opt);
    now = 2;
    p.update(10);  // before the first interval: nothing printed
    now = 10;
    p.set_field("loss", "2.50");
    p.update(50);  // 50 steps in 10 s: 5 step/s, 50 left -> ETA 10 s
    CHECK(p.rate() == Approx(5.0));
    now = 20;
    p.set_field("loss", "1.25");
    p.update(100);
    p.finish();
  }
  std::fclose(f);
  auto text = tess::test::read_file(path);
  CHECK(text ==
        "train  50% [############............] 50/100 step [10s<10s, 5 step/s] loss=2.50\n"
        "train 100% [########################] 100/100 step [20s<0s, 5 step/s] loss=1.25\n");
}

TEST_CASE("a disabled progress bar prints nothing", "[unit][util]") {
  tess::test::TempDir dir;
  auto path = dir / "p.txt";
  std::FILE* f = std::fopen(path.c_str(), "w");
  {
    Progress::Options opt;
    opt.out = f;
    opt.enabled = false;
    Progress p("x", 10, opt);
    p.advance(10);
  }
  std::fclose(f);
  CHECK(tess::test::read_file(path).empty());
}

TEST_CASE("named rng streams: seeded, independent by name, and restorable exactly", "[unit][util]") {
  Rng a(42, "noise"), b(42, "noise"), c(42, "span_mask"), d(43, "noise");
  auto first = a.next_u64();
  CHECK(first == b.next_u64());
  CHECK(first != c.next_u64());
  CHECK(first != d.next_u64());
  CHECK(derive_seed(42, "noise") == a.seed());

  auto saved = a.state();
  std::vector<uint64_t> expected;
  for (int i = 0; i < 5; ++i) expected.push_back(a.next_u64());
  auto t1 = torch::randn({4}, a.generator());
  a.set_state(saved);
  for (int i = 0; i < 5; ++i) CHECK(a.next_u64() == expected[i]);
  CHECK(torch::equal(torch::randn({4}, a.generator()), t1));

  for (int i = 0; i < 1000; ++i) {
    auto v = a.uniform_int(3, 7);
    CHECK((v >= 3 && v <= 7));
    double u = a.uniform();
    CHECK((u >= 0.0 && u < 1.0));
  }
  CHECK_THROWS_AS(a.set_state({1, 2, 3}), tess::Error);
}

TEST_CASE("a background thread can ask to run only on idle cycles, and only it changes class", "[unit][util]") {
  int policy_there = -1;
  bool granted = false;
  std::thread t([&] {
    granted = run_this_thread_when_idle();
    sched_param p{};
    pthread_getschedparam(pthread_self(), &policy_there, &p);
  });
  t.join();
  // Linux grants SCHED_IDLE to unprivileged threads; a sandbox may refuse,
  // and then the answer must say so and nothing may have changed.
  if (!granted) WARN("SCHED_IDLE refused here");
  CHECK((policy_there == SCHED_IDLE) == granted);
  sched_param p{};
  int policy_here = -1;
  pthread_getschedparam(pthread_self(), &policy_here, &p);
  CHECK(policy_here != SCHED_IDLE);
}

TEST_CASE("a LibTorch error reaches users without its C++ stack", "[unit][util]") {
  std::string message;
  try {
    TORCH_CHECK(false, "the tensor is on the wrong device");
  } catch (const c10::Error& e) {
    message = e.what();
  }
  REQUIRE_THAT(message, Catch::Contains("Exception raised from"));  // what LibTorch gives
  auto clean = tess::without_backtrace(message);
  CHECK(clean == "the tensor is on the wrong device");
  CHECK(tess::without_backtrace("plain message\n") == "plain message");
}
