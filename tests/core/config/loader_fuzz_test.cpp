// Property: whatever bytes the loaders are given, they either succeed or throw a UserError. Never a
// crash, a hang, an InternalError or a stray library exception. Inputs are the bundled examples
// mutated at random (deterministically seeded) and random values put under every DeepSpeed key.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "core/config/run_spec.h"
#include "core/model/model_json.h"
#include "core/model/presets.h"

namespace zp {
namespace {

const std::filesystem::path kExamples =
    std::filesystem::path(ZEROPLAN_SOURCE_DIR) / "configs" / "examples";

// ZEROPLAN_FUZZ_SCALE=N runs N times as many mutations (for a deeper run by hand).
int Scale() {
  const char* env = std::getenv("ZEROPLAN_FUZZ_SCALE");
  return env ? std::max(1, std::atoi(env)) : 1;
}

std::string ReadText(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class Mutator {
 public:
  explicit Mutator(unsigned seed) : rng_(seed) {}

  std::string Mutate(std::string text) {
    const int edits = 1 + Pick(3);
    for (int i = 0; i < edits && !text.empty(); ++i) {
      const size_t at = Pick(text.size());
      switch (Pick(7)) {
        case 0:
          text.erase(at, 1 + Pick(8));
          break;
        case 1:
          text.insert(at, 1, kAlphabet[Pick(sizeof(kAlphabet) - 1)]);
          break;
        case 2:
          text.resize(at);
          break;
        case 3: {  // replace a number with something else
          const size_t digit = text.find_first_of("0123456789", at);
          if (digit == std::string::npos) break;
          const size_t end = text.find_first_not_of("0123456789.e", digit);
          static const char* kValues[] = {"-1", "1e30", "\"x\"", "true", "null",
                                          "0",  "[1]",  "{}",    "1.5",  "-0.0"};
          text.replace(digit, (end == std::string::npos ? text.size() : end) - digit,
                       kValues[Pick(10)]);
          break;
        }
        case 4: {  // duplicate a line
          const size_t start = text.rfind('\n', at);
          const size_t end = text.find('\n', at);
          const size_t s = start == std::string::npos ? 0 : start + 1;
          text.insert(s, text.substr(s, (end == std::string::npos ? text.size() : end) - s) + "\n");
          break;
        }
        case 5:
          text[at] = static_cast<char>(Pick(256));
          break;
        case 6: {  // swap a key's value with a container
          const size_t colon = text.find(':', at);
          if (colon != std::string::npos) text.insert(colon + 1, Pick(2) ? " [" : " {");
          break;
        }
      }
    }
    return text;
  }

  size_t Pick(size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng_); }

 private:
  static constexpr char kAlphabet[] = "{}[]:,\"'-#&*!|>\n \t0123456789abcxyz.eE";
  std::mt19937 rng_;
};

template <class F>
void ExpectOnlyUserErrors(F&& f, const std::string& input) {
  try {
    f();
  } catch (const UserError&) {
  } catch (const std::exception& e) {
    ADD_FAILURE() << "non-user error " << typeid(e).name() << ": " << e.what() << "\ninput:\n"
                  << input;
  }
}

TEST(LoaderFuzz, MutatedRunSpecs) {
  Mutator m(20261122);
  int accepted = 0, runs = 0;
  for (const auto& entry : std::filesystem::directory_iterator(kExamples)) {
    if (entry.path().extension() != ".yaml") continue;
    // Big models are slower to build; the small ones exercise the same loaders.
    const std::string original = ReadText(entry.path());
    for (int i = 0; i < 300 * Scale(); ++i) {
      const std::string text = m.Mutate(original);
      ++runs;
      ExpectOnlyUserErrors(
          [&] {
            const Document d = Document::from_yaml(text, entry.path().filename().string());
            parse_run_spec(d, kExamples);
            ++accepted;
          },
          text);
    }
  }
  EXPECT_GT(runs, 500);
  EXPECT_GT(accepted, 0);  // some mutations are harmless: the property was exercised both ways
}

TEST(LoaderFuzz, MutatedDeepSpeedConfigs) {
  Mutator m(7);
  for (const auto& entry : std::filesystem::directory_iterator(kExamples / "ds")) {
    const std::string original = ReadText(entry.path());
    for (int i = 0; i < 400 * Scale(); ++i) {
      const std::string text = m.Mutate(original);
      ExpectOnlyUserErrors(
          [&] {
            const Document d = Document::from_json(text, "ds.json");
            DeepSpeedContext c;
            c.data_parallel_size = 1 + static_cast<std::int64_t>(m.Pick(8));
            parse_deepspeed_config(Node(d), c);
          },
          text);
    }
  }
}

TEST(LoaderFuzz, RandomValuesUnderEveryDeepSpeedKey) {
  // Every key the resolver knows, from its own record of a default config.
  Document base = Document::from_json(
      R"({"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 3, "offload_param": {}, "offload_optimizer": {}}, "pipeline": {}, "activation_checkpointing": {}})",
      "ds.json");
  const DeepSpeedConfig defaults = parse_deepspeed_config(Node(base), DeepSpeedContext{});
  const std::vector<Json> values = {nullptr,
                                    true,
                                    false,
                                    0,
                                    1,
                                    -1,
                                    3,
                                    1e30,
                                    0.5,
                                    -0.5,
                                    "auto",
                                    "cpu",
                                    "7",
                                    "",
                                    Json::array(),
                                    Json::object(),
                                    Json{{"device", "cpu"}}};
  std::mt19937 rng(3);
  int checked = 0;
  for (const ResolvedSetting& s : defaults.provenance) {
    for (const Json& v : values) {
      Json j = base.root();
      set_at_path(j, s.key, v);
      const std::string text = j.dump();
      ++checked;
      ExpectOnlyUserErrors(
          [&] {
            const Document d = Document::from_json(text, "ds.json");
            DeepSpeedContext c;
            c.data_parallel_size = 1 + static_cast<std::int64_t>(rng() % 4);
            c.pipeline_parallel_size = 1 + static_cast<std::int64_t>(rng() % 2);
            parse_deepspeed_config(Node(d), c);
          },
          text);
    }
  }
  EXPECT_GT(checked, 500);
}

TEST(LoaderFuzz, MutatedModelFiles) {
  Mutator m(11);
  const std::string original =
      model_to_json(build_model(*find_preset("tiny-gpt2"), BatchShape{1, 4, DType::kFloat32}))
          .dump(1);
  for (int i = 0; i < 1500 * Scale(); ++i) {
    const std::string text = m.Mutate(original);
    ExpectOnlyUserErrors(
        [&] {
          const Document d = Document::from_json(text, "model.json");
          model_from_json(Node(d));
        },
        text.substr(0, 2000));
  }
}

}  // namespace
}  // namespace zp
