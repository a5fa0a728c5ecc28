// Test helpers shared by the storage tests (and tests of code on a store).
// Test-only; any thread.
#ifndef SALVO_STORAGE_TEST_UTIL_H_
#define SALVO_STORAGE_TEST_UTIL_H_

#include <stdlib.h>

#include <string>

#include "gtest/gtest.h"

namespace salvo::storage {

// A path for a new store: "<dir>/db" in a fresh directory under
// $TEST_TMPDIR (or /tmp) named after `tag`. The store creates "db".
inline std::string FreshDbPath(const std::string& tag) {
  const char* tmp = getenv("TEST_TMPDIR");
  std::string templ = std::string(tmp ? tmp : "/tmp") + "/" + tag + "_XXXXXX";
  char* dir = mkdtemp(templ.data());
  EXPECT_NE(dir, nullptr) << templ;
  return templ + "/db";
}

}  // namespace salvo::storage

#endif  // SALVO_STORAGE_TEST_UTIL_H_
