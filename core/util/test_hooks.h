#pragma once
// Hooks through which the test suite proves what it claims; inert unless an
// environment variable names them, and never needed by a user.
//
// TESS_FAULT=<point>:<value>  the process SIGKILLs itself when it reaches the
//   named point with that value (e.g. "after_step:12": once step 12 is
//   logged), so a test can crash a run at an exact place instead of racing a
//   timer. Every process of a launch reads the same variable.
// TESS_TEST_MUTATION=<name>  switches on a deliberate bug (see docs/testing.md
//   for the list), so that a test can show the suite fails when that bug is
//   present. A run with a mutation logs so loudly at start.
#include <cstdint>
#include <string>

namespace tess::util {

// True when TESS_FAULT is "<point>:<value>": the caller brings the process
// to the state the point promises, then calls kill_self().
bool fault_armed(const char* point, int64_t value);
[[noreturn]] void kill_self();
// kill_self() when fault_armed(point, value).
void fault_point(const char* point, int64_t value);


// True when TESS_TEST_MUTATION names `mutation`.
bool test_mutation(const char* mutation);
// The active mutation ("" when none).
const std::string& active_test_mutation();

}  // namespace tess::util
