// How `eval` and `train` show patient-bootstrap intervals (maskrcnn/bootstrap.h): one format for
// the table, the JSON and the report, so a figure read from either means the same.
#pragma once
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "maskrcnn/bootstrap.h"

namespace mrcnn::apps {

// "0.745-0.848", or "n/a" when the bootstrap could not say.
std::string range(const detection::Interval& i, const std::function<std::string(double)>& format);
// "95% intervals, bootstrap over the 8 patients (2000 resamples): ..."
std::string intervals_caption(const detection::PatientIntervals& i);
// [low * scale, high * scale], or null when undefined.
nlohmann::json interval_json(const detection::Interval& i, double scale = 1);
// level, resamples, patients and each figure's interval; hd95_mm too when pixel_mm > 0.
nlohmann::json intervals_json(const detection::PatientIntervals& i, double pixel_mm);

}  // namespace mrcnn::apps
