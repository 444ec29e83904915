// Reading JSON numbers into C++ numbers without undefined behaviour.
//
// nlohmann's get<T>() converts with a plain static_cast: a float such as 1e30 read as an integer, or
// 1e300 read as a float, is undefined behaviour (UBSan stops there; in a release build the value is
// garbage), and an integer out of T's range silently wraps. Hostile or mistyped files reach these
// conversions (COCO annotations, results, configs, checkpoint metadata), so every arithmetic read goes
// through json_number<T>, and containers are checked with json_numbers_fit<T> before get<T>().
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>
#include <nlohmann/json.hpp>

#include "tensor/error.h"

namespace mrcnn {

template <typename T>
struct is_std_vector : std::false_type {};
template <typename T, typename A>
struct is_std_vector<std::vector<T, A>> : std::true_type {};

// True when `value` is a JSON number that T represents: for an integral T an integer (or a float with
// an integral value, like 3.0) inside T's range; for a floating T any number within T's finite range.
template <typename T>
bool json_number_fits(const nlohmann::json& value) {
  static_assert(std::is_arithmetic_v<T> && !std::is_same_v<T, bool>);
  if (!value.is_number()) return false;
  if constexpr (std::is_floating_point_v<T>) {
    if (!value.is_number_float()) return true;  // every 64-bit integer has a (rounded) float value
    const double x = value.get<double>();
    return !std::isfinite(x) || std::fabs(x) <= static_cast<double>(std::numeric_limits<T>::max());
  } else {
    if (value.is_number_unsigned()) return value.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<T>::max());
    if (value.is_number_integer()) {
      const int64_t x = value.get<int64_t>();
      if constexpr (std::is_signed_v<T>)
        return x >= static_cast<int64_t>(std::numeric_limits<T>::min()) && x <= static_cast<int64_t>(std::numeric_limits<T>::max());
      else
        return x >= 0 && static_cast<uint64_t>(x) <= static_cast<uint64_t>(std::numeric_limits<T>::max());
    }
    const double x = value.get<double>();
    // -2^63 and 2^64 are exact doubles; comparing against them avoids rounding max() up.
    const double lowest = std::is_signed_v<T> ? -std::ldexp(1.0, std::numeric_limits<T>::digits) : 0.0;
    const double above_max = std::ldexp(1.0, std::numeric_limits<T>::digits);
    return std::isfinite(x) && x == std::floor(x) && x >= lowest && x < above_max;
  }
}

// The number as T, or an Error "<what> must be <kind>, got <value>".
template <typename T>
T json_number(const nlohmann::json& value, const std::string& what) {
  if (!json_number_fits<T>(value)) {
    const char* kind = std::is_floating_point_v<T> ? "a number"
                       : std::is_signed_v<T>        ? "an integer"
                                                    : "a non-negative integer";
    const std::string shown = value.is_number() ? value.dump() : value.type_name();
    throw Error(str_cat(what, " must be ", kind, " in range, got ", shown));
  }
  return value.get<T>();
}

// For T built from arithmetic types and std::vector (the shapes configs use): false when any number
// inside `value` that get<T>() would convert does not fit. Non-numeric mismatches are left to get<T>(),
// which throws a type_error for them.
template <typename T>
bool json_numbers_fit(const nlohmann::json& value) {
  if constexpr (std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) {
    return !value.is_number() || json_number_fits<T>(value);
  } else if constexpr (is_std_vector<T>::value) {
    if (!value.is_array()) return true;
    for (const auto& element : value)
      if (!json_numbers_fit<typename T::value_type>(element)) return false;
    return true;
  } else {
    return true;
  }
}

}  // namespace mrcnn
