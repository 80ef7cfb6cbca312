// The coordinator, in DeepSpeed v0.14 mode, against traces recorded from real DeepSpeed v0.14.5:
// every hook, gather (demand, prefetch, outside), release, gradient bucket and step reset, in
// order, for every step. traces/deepspeed-v0.14.5/README.md describes the cases.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "core/config/ds_config.h"
#include "core/config/reader.h"
#include "core/model/model_json.h"
#include "core/zero/training_step.h"

namespace zp::zero {
namespace {

namespace fs = std::filesystem;

fs::path GoldenRoot() {
  if (const char* dir = std::getenv("ZEROPLAN_GOLDEN_DIR")) return dir;
  return fs::path(ZEROPLAN_SOURCE_DIR) / "traces" / "deepspeed-v0.14.5";
}

std::string Join(std::vector<std::string> names) {
  std::sort(names.begin(), names.end());
  std::string out = "[";
  for (const std::string& n : names)
    out += (out.size() > 1 ? " " : "") + n;
  return out + "]";
}

std::string ModuleName(const ModuleTree& tree, ModuleId m) {
  const std::string name = tree.qualified_name(m);
  return name.empty() ? "<root>" : name;
}

// Decisions as lines, grouped by step.
using Lines = std::map<std::int64_t, std::vector<std::string>>;

Lines OracleLines(const fs::path& trace) {
  Lines out;
  std::ifstream in(trace);
  std::string line;
  while (std::getline(in, line)) {
    const Json e = Json::parse(line);
    if (e["rank"] != 0) continue;
    const std::int64_t step = e["step"];
    if (step < 0) continue;
    const std::string ev = e["ev"];
    auto names = [](const Json& params) {
      std::vector<std::string> v;
      for (const Json& p : params)
        v.push_back(p.is_string() ? p.get<std::string>() : p["name"].get<std::string>());
      return v;
    };
    if (ev == "hook") {
      out[step].push_back("hook " + e["hook"].get<std::string>() + " " +
                          e["module"].get<std::string>());
    } else if (ev == "allgather") {
      const std::string kind = e["kind"];
      out[step].push_back("gather " + kind +
                          (kind == "other" ? std::string() : " " + e["module"].get<std::string>()) +
                          " " + Join(names(e["params"])));
    } else if (ev == "release") {
      out[step].push_back("release " + (e["param"].is_string()
                                            ? e["param"].get<std::string>()
                                            : e["param"]["name"].get<std::string>()));
    } else if (ev == "grad_reduce_scatter") {
      out[step].push_back("reduce " + e["path"].get<std::string>() + " " +
                          Join(names(e["params"])));
    } else if (ev == "coordinator_reset_step") {
      out[step].push_back("reset_step");
    }
  }
  return out;
}

class Recorder : public CoordinatorBackend, public GradientReducerBackend, public StepObserver {
 public:
  explicit Recorder(const ModuleTree& tree) : tree_(tree) {}
  Lines lines;

  void start_gather(const GatherRequest& r) override {
    std::vector<std::string> names;
    for (ParamId p : r.params)
      names.push_back(tree_.parameter(p).name);
    const std::string kind(to_string(r.reason));
    add("gather " + kind +
        (r.reason == GatherReason::kOutside ? std::string() : " " + ModuleName(tree_, r.module)) +
        " " + Join(names));
  }
  void wait_gather(GatherHandle) override {}
  void release(ParamId p, ReleaseReason reason) override {
    if (reason != ReleaseReason::kOutside) add("release " + tree_.parameter(p).name);
  }
  void reduce(const GradBucket& b) override {
    std::vector<std::string> names;
    for (ParamId p : b.params)
      names.push_back(tree_.parameter(p).name);
    add(std::string("reduce ") +
        (b.path == ReducePath::kReduceScatter ? "reduce_scatter_coalesced"
                                              : "contiguous_all_reduce") +
        " " + Join(names));
  }
  void on_phase(StepPhase, std::int64_t step) override { step_ = step; }
  void on_event(const StepEvent& e) override {
    if (e.kind == StepEventKind::kGradReady) return;
    add("hook " + std::string(to_string(e.kind)) + " " + ModuleName(tree_, e.module));
  }
  void on_reset_step() override { add("reset_step"); }

 private:
  void add(std::string line) {
    if (step_ >= 0) lines[step_].push_back(std::move(line));
  }
  const ModuleTree& tree_;
  std::int64_t step_ = -1;
};

struct Case {
  fs::path dir;
};
// Named by its folder in test listings, not by its bytes.
void PrintTo(const Case& c, std::ostream* os) {
  *os << c.dir.filename().string();
}

std::vector<Case> Cases() {
  std::vector<Case> cases;
  if (!fs::exists(GoldenRoot())) return cases;
  for (const auto& entry : fs::directory_iterator(GoldenRoot())) {
    if (entry.is_directory() && fs::exists(entry.path() / "trace.jsonl"))
      cases.push_back({entry.path()});
  }
  std::sort(cases.begin(), cases.end(), [](const Case& a, const Case& b) { return a.dir < b.dir; });
  return cases;
}

ZeroSettings SettingsFor(const fs::path& dir, const Json& meta) {
  Document doc = Document::load(dir / "ds_config.json");
  Json config = doc.root();
  const Json driver = config.value("driver", Json::object());
  config.erase("driver");
  Document clean = Document::from_value(config, (dir / "ds_config.json").string());
  DeepSpeedContext context;
  context.data_parallel_size = meta["world_size"];
  if (!config.contains("train_micro_batch_size_per_gpu") && !config.contains("train_batch_size")) {
    context.micro_batch = meta.value("batch", 1);
  }
  const DeepSpeedConfig ds = parse_deepspeed_config(Node(clean), context);
  ZeroSettings s = ZeroSettings::from(ds, context.data_parallel_size);
  s.version = DeepSpeedVersion::kV0_14;
  for (const Json& m : meta.value("z3_leaf_modules", Json::array())) {
    (void)m;  // the leaves by name are below; classes come from the driver options
  }
  if (driver.contains("z3_leaf_modules")) {
    const Json& classes = driver["z3_leaf_modules"];
    if (classes.is_array()) {
      for (const Json& c : classes)
        s.leaf_module_classes.push_back(c);
    } else if (classes == "LEAF_CLASSES") {
      for (const Json& c : meta.value("leaf_classes", Json::array()))
        s.leaf_module_classes.push_back(c);
    }
  }
  s.module_granularity_threshold = driver.value("module_granularity_threshold", 0);
  return s;
}

Json Meta(const fs::path& trace) {
  std::ifstream in(trace);
  std::string line;
  while (std::getline(in, line)) {
    Json e = Json::parse(line);
    if (e["ev"] == "meta" && e["rank"] == 0) return e;
  }
  return Json::object();
}

void ExpectSameLines(const std::vector<std::string>& expected,
                     const std::vector<std::string>& actual, const std::string& what) {
  const size_t n = std::min(expected.size(), actual.size());
  size_t first = n;
  for (size_t i = 0; i < n; ++i) {
    if (expected[i] != actual[i]) {
      first = i;
      break;
    }
  }
  if (first == n && expected.size() == actual.size()) return;
  std::ostringstream msg;
  msg << what << ": first difference at decision " << first << " (DeepSpeed has " << expected.size()
      << ", zeroplan " << actual.size() << ")\n";
  const size_t from = first >= 4 ? first - 4 : 0;
  for (size_t i = from; i < std::min(first + 6, std::max(expected.size(), actual.size())); ++i) {
    msg << (i == first ? ">> " : "   ")
        << "deepspeed: " << (i < expected.size() ? expected[i] : "<none>") << "\n"
        << (i == first ? ">> " : "   ")
        << "zeroplan:  " << (i < actual.size() ? actual[i] : "<none>") << "\n";
  }
  ADD_FAILURE() << msg.str();
}

class GoldenTrace : public ::testing::TestWithParam<Case> {};

TEST_P(GoldenTrace, EveryDecisionMatchesDeepSpeed) {
  const fs::path dir = GetParam().dir;
  const Json meta = Meta(dir / "trace.jsonl");
  ASSERT_FALSE(meta.empty()) << dir;
  const ModuleTree tree = load_model_file(dir / "model.json");
  const ZeroModel model(tree, SettingsFor(dir, meta));
  Recorder recorder(tree);
  TrainingLoop loop(model, recorder, recorder, &recorder);
  loop.initialize();
  const std::int64_t steps = meta["steps"];
  for (std::int64_t s = 0; s < steps; ++s)
    loop.step();

  const Lines expected = OracleLines(dir / "trace.jsonl");
  ASSERT_EQ(expected.size(), static_cast<size_t>(steps)) << dir;
  for (std::int64_t s = 0; s < steps; ++s) {
    ExpectSameLines(expected.at(s), recorder.lines[s],
                    dir.filename().string() + " step " + std::to_string(s));
  }
}

std::string CaseName(const ::testing::TestParamInfo<Case>& info) {
  std::string name = info.param.dir.filename().string();
  for (char& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return name;
}

INSTANTIATE_TEST_SUITE_P(DeepSpeedV0_14_5, GoldenTrace, ::testing::ValuesIn(Cases()), CaseName);

TEST(GoldenTraces, ArePresent) {
  EXPECT_GE(Cases().size(), 8u) << "expected golden traces under " << GoldenRoot();
}

}  // namespace
}  // namespace zp::zero
