#include "tests/helpers.h"
using namespace mrcnn;
TEST_CASE("placeholder") { CHECK(zeros({2, 3}).numel() == 6); }
