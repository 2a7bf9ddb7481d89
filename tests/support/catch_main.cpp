// Catch2's main for every test executable. Two warnings are always on, so no
// test can pass by running nothing: a name filter that matches no test case
// fails (NoTests), and so does a test case or leaf section that reaches no
// assertion (NoAssertions). Catch2 v2 takes only one --warn on its command
// line, hence they are set here. tests/support/check_registration.py checks
// that both hold for every test executable.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

int main(int argc, char* argv[]) {
  Catch::Session session;
  if (int rc = session.applyCommandLine(argc, argv); rc != 0) return rc;
  auto& config = session.configData();
  config.warnings = static_cast<Catch::WarnAbout::What>(config.warnings | Catch::WarnAbout::NoAssertions |
                                                        Catch::WarnAbout::NoTests);
  return session.run();
}

// Hidden (never registered with ctest): check_registration.py runs it and
// expects the failure NoAssertions must give.
TEST_CASE("a test case without assertions fails", "[.][self-check]") {}
