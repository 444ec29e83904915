// The doctest runner shared by every test executable.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <filesystem>

#include "tests/helpers.h"

int main(int argc, char** argv) {
  doctest::Context context(argc, argv);
  const int status = context.run();
  // The files tests wrote go when they all passed; after a failure they stay for a look.
  const std::filesystem::path scratch = mrcnn::test::scratch_root();
  std::error_code error;
  if (std::filesystem::exists(scratch, error)) {
    if (status == 0) std::filesystem::remove_all(scratch, error);
    else std::fprintf(stderr, "test files kept in %s\n", scratch.c_str());
  }
  return status;
}
