// Metrics registry and Prometheus text exposition (format 0.0.4).
// In: Get*() calls from any thread (find-or-create under mu_), lock-free
// updates through the returned pointers. Out: Expose() text for /metrics.
// Names are validated once at registration: a bad name aborts in debug
// builds and is sanitized (invalid characters -> '_') in release builds.
#include "engine/metrics/registry.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"

namespace salvo::metrics {
namespace {

enum class Type { kCounter, kGauge, kHistogram };

const char* TypeName(Type t) {
  switch (t) {
    case Type::kCounter: return "counter";
    case Type::kGauge: return "gauge";
    case Type::kHistogram: return "histogram";
  }
  return "untyped";
}

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "salvo::metrics: %s\n", what.c_str());
  std::abort();
}

// Debug: abort. Release: report once per call site kind and carry on.
void Misuse(const std::string& what) {
#ifndef NDEBUG
  Die(what);
#else
  std::fprintf(stderr, "salvo::metrics: %s (sanitized)\n", what.c_str());
#endif
}

bool IsNameStart(char c, bool allow_colon) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
         (allow_colon && c == ':');
}
bool IsNameChar(char c, bool allow_colon) {
  return IsNameStart(c, allow_colon) || (c >= '0' && c <= '9');
}

// Metric names: [a-zA-Z_:][a-zA-Z0-9_:]*; label names: [a-zA-Z_][a-zA-Z0-9_]*.
bool ValidName(absl::string_view name, bool allow_colon) {
  if (name.empty() || !IsNameStart(name[0], allow_colon)) return false;
  for (char c : name) {
    if (!IsNameChar(c, allow_colon)) return false;
  }
  return true;
}

std::string Sanitize(absl::string_view name, bool allow_colon) {
  std::string out(name);
  if (out.empty()) out = "_";
  for (size_t i = 0; i < out.size(); ++i) {
    bool ok = i == 0 ? IsNameStart(out[i], allow_colon)
                     : IsNameChar(out[i], allow_colon);
    if (!ok) out[i] = '_';
  }
  return out;
}

bool EndsWith(absl::string_view s, absl::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.substr(s.size() - suffix.size()) == suffix;
}

std::string CheckMetricName(absl::string_view name, Type type) {
  std::string out(name);
  if (!ValidName(name, /*allow_colon=*/true)) {
    Misuse(absl::StrCat("invalid metric name \"", name, "\""));
    out = Sanitize(name, true);
  }
  // Naming conventions that `promtool check metrics` enforces.
  if (type == Type::kCounter && !EndsWith(out, "_total")) {
    Misuse(absl::StrCat("counter \"", out, "\" must end in _total"));
    out += "_total";
  }
  if (type != Type::kCounter && EndsWith(out, "_total")) {
    Misuse(absl::StrCat(TypeName(type), " \"", out,
                        "\" must not end in _total"));
    out += "_value";
  }
  if (type != Type::kHistogram &&
      (EndsWith(out, "_bucket") || EndsWith(out, "_count") ||
       EndsWith(out, "_sum"))) {
    Misuse(absl::StrCat(TypeName(type), " \"", out,
                        "\" uses a histogram suffix"));
    out += "_value";
  }
  return out;
}

// Sorted by label name; names validated; duplicates and reserved names
// ("__*", "le" on histograms) rejected.
Labels CanonicalLabels(absl::string_view metric, const Labels& labels,
                       Type type) {
  Labels out = labels;
  for (auto& [name, value] : out) {
    if (!ValidName(name, /*allow_colon=*/false) ||
        absl::string_view(name).substr(0, 2) == "__" ||
        (type == Type::kHistogram && name == "le")) {
      Misuse(absl::StrCat("invalid label name \"", name, "\" on ", metric));
      name = Sanitize(name, false);
      if (absl::string_view(name).substr(0, 2) == "__") name[0] = 'x';
      if (type == Type::kHistogram && name == "le") name = "le_";
    }
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  for (size_t i = 1; i < out.size(); ++i) {
    if (out[i].first == out[i - 1].first) {
      Misuse(absl::StrCat("duplicate label \"", out[i].first, "\" on ",
                          metric));
      out.erase(out.begin() + i);
      --i;
    }
  }
  return out;
}

// Shortest text that reads back as the same double; Prometheus spellings
// for the special values.
std::string FormatDouble(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[32];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof(buf), "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

void AppendEscaped(std::string* out, absl::string_view s, bool quote) {
  for (char c : s) {
    switch (c) {
      case '\\': out->append("\\\\"); break;
      case '\n': out->append("\\n"); break;
      case '"':
        if (quote) {
          out->append("\\\"");
        } else {
          out->push_back(c);
        }
        break;
      default: out->push_back(c);
    }
  }
}

// Appends `{a="x",b="y"[,le="..."]}` (nothing for no labels).
void AppendLabels(std::string* out, const Labels& labels,
                  const std::string* le) {
  if (labels.empty() && le == nullptr) return;
  out->push_back('{');
  bool first = true;
  for (const auto& [name, value] : labels) {
    if (!first) out->push_back(',');
    first = false;
    out->append(name);
    out->append("=\"");
    AppendEscaped(out, value, /*quote=*/true);
    out->push_back('"');
  }
  if (le != nullptr) {
    if (!first) out->push_back(',');
    out->append("le=\"");
    out->append(*le);
    out->push_back('"');
  }
  out->push_back('}');
}

std::vector<double> CheckBounds(std::vector<double> bounds) {
  std::vector<double> out;
  bool ok = true;
  for (double b : bounds) {
    if (std::isnan(b)) { ok = false; continue; }
    if (std::isinf(b) && b > 0) continue;  // +Inf is always implied.
    if (!out.empty() && b <= out.back()) ok = false;
    out.push_back(b);
  }
  if (!ok) {
    Misuse("histogram bounds must be increasing numbers");
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------- Histogram

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(CheckBounds(std::move(bounds))),
      buckets_(new std::atomic<int64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) buckets_[i].store(0);
}

void Histogram::Observe(double v) {
  // First bound >= v ("le" semantics); past the end is +Inf (and NaN).
  size_t i = std::isnan(v) ? bounds_.size()
                           : std::lower_bound(bounds_.begin(), bounds_.end(),
                                              v) -
                                 bounds_.begin();
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  uint64_t old_bits = sum_bits_.load(std::memory_order_relaxed);
  uint64_t new_bits;
  do {
    double sum;
    std::memcpy(&sum, &old_bits, sizeof(sum));
    sum += v;
    std::memcpy(&new_bits, &sum, sizeof(sum));
  } while (!sum_bits_.compare_exchange_weak(old_bits, new_bits,
                                            std::memory_order_relaxed));
}

std::vector<int64_t> Histogram::cumulative() const {
  std::vector<int64_t> out(bounds_.size() + 1);
  int64_t running = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    out[i] = running;
  }
  return out;
}

double Histogram::sum() const {
  uint64_t bits = sum_bits_.load(std::memory_order_relaxed);
  double sum;
  std::memcpy(&sum, &bits, sizeof(sum));
  return sum;
}

int64_t Histogram::count() const {
  return count_.load(std::memory_order_relaxed);
}

// ----------------------------------------------------------------- Registry

struct Registry::Family {
  Type type;
  std::string help;
  std::vector<double> bounds;  // histograms only
  std::map<Labels, std::unique_ptr<Counter>> counters;
  std::map<Labels, std::unique_ptr<Gauge>> gauges;
  std::map<Labels, std::unique_ptr<Histogram>> histograms;
};

Registry::Registry() = default;
Registry::~Registry() = default;

Registry& Registry::Default() {
  static Registry* registry = new Registry();  // never destroyed
  return *registry;
}

namespace {

// Finds or creates the family; aborts on a type or help mismatch.
template <typename FamilyT, typename Map>
FamilyT* FindFamily(Map& families, const std::string& name, Type type,
                    absl::string_view help) {
  auto it = families.find(name);
  if (it == families.end()) {
    auto family = std::make_unique<FamilyT>();
    family->type = type;
    family->help = std::string(help);
    if (family->help.empty()) {
      Misuse(absl::StrCat("metric ", name, " needs help text"));
      family->help = name;
    }
    it = families.emplace(name, std::move(family)).first;
    return it->second.get();
  }
  FamilyT* family = it->second.get();
  if (family->type != type) {
    Die(absl::StrCat("metric ", name, " registered as ",
                     TypeName(family->type), " and as ", TypeName(type)));
  }
  if (!help.empty() && family->help != help) {
    Die(absl::StrCat("metric ", name, " registered with two help texts"));
  }
  return family;
}

}  // namespace

Counter* Registry::GetCounter(absl::string_view name, absl::string_view help,
                              const Labels& labels) {
  std::string checked = CheckMetricName(name, Type::kCounter);
  Labels key = CanonicalLabels(checked, labels, Type::kCounter);
  absl::MutexLock lock(&mu_);
  Family* f = FindFamily<Family>(families_, checked, Type::kCounter, help);
  auto& slot = f->counters[std::move(key)];
  if (slot == nullptr) slot = std::make_unique<Counter>();
  return slot.get();
}

Gauge* Registry::GetGauge(absl::string_view name, absl::string_view help,
                          const Labels& labels) {
  std::string checked = CheckMetricName(name, Type::kGauge);
  Labels key = CanonicalLabels(checked, labels, Type::kGauge);
  absl::MutexLock lock(&mu_);
  Family* f = FindFamily<Family>(families_, checked, Type::kGauge, help);
  auto& slot = f->gauges[std::move(key)];
  if (slot == nullptr) slot = std::make_unique<Gauge>();
  return slot.get();
}

Histogram* Registry::GetHistogram(absl::string_view name,
                                  absl::string_view help,
                                  const std::vector<double>& bounds,
                                  const Labels& labels) {
  std::string checked = CheckMetricName(name, Type::kHistogram);
  Labels key = CanonicalLabels(checked, labels, Type::kHistogram);
  auto histogram = std::make_unique<Histogram>(bounds);
  absl::MutexLock lock(&mu_);
  Family* f = FindFamily<Family>(families_, checked, Type::kHistogram, help);
  if (f->histograms.empty()) {
    f->bounds = histogram->bounds();
  } else if (f->bounds != histogram->bounds()) {
    Die(absl::StrCat("histogram ", checked, " registered with two bucket sets"));
  }
  auto& slot = f->histograms[std::move(key)];
  if (slot == nullptr) slot = std::move(histogram);
  return slot.get();
}

std::string Registry::Expose() const {
  std::string out;
  absl::MutexLock lock(&mu_);
  for (const auto& [name, family] : families_) {
    out.append("# HELP ").append(name).push_back(' ');
    AppendEscaped(&out, family->help, /*quote=*/false);
    out.append("\n# TYPE ").append(name).push_back(' ');
    out.append(TypeName(family->type)).push_back('\n');
    switch (family->type) {
      case Type::kCounter:
        for (const auto& [labels, c] : family->counters) {
          out.append(name);
          AppendLabels(&out, labels, nullptr);
          absl::StrAppend(&out, " ", c->value(), "\n");
        }
        break;
      case Type::kGauge:
        for (const auto& [labels, g] : family->gauges) {
          out.append(name);
          AppendLabels(&out, labels, nullptr);
          absl::StrAppend(&out, " ", g->value(), "\n");
        }
        break;
      case Type::kHistogram:
        for (const auto& [labels, h] : family->histograms) {
          std::vector<int64_t> cumulative = h->cumulative();
          for (size_t i = 0; i < cumulative.size(); ++i) {
            std::string le = i < h->bounds().size()
                                 ? FormatDouble(h->bounds()[i])
                                 : std::string("+Inf");
            out.append(name).append("_bucket");
            AppendLabels(&out, labels, &le);
            absl::StrAppend(&out, " ", cumulative[i], "\n");
          }
          out.append(name).append("_sum");
          AppendLabels(&out, labels, nullptr);
          absl::StrAppend(&out, " ", FormatDouble(h->sum()), "\n");
          // _count from the buckets so that it always equals le="+Inf".
          out.append(name).append("_count");
          AppendLabels(&out, labels, nullptr);
          absl::StrAppend(&out, " ", cumulative.back(), "\n");
        }
        break;
    }
  }
  return out;
}

}  // namespace salvo::metrics
