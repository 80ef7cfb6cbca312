#include "planner/knobs.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "core/config/ds_config.h"

namespace zp::planner {
namespace {

TEST(Knobs, EveryDeepSpeedKnobIsAKeyTheResolverKnows) {
  const Document d = Document::from_json(
      R"({"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 3, "offload_param": {}, "offload_optimizer": {}}})",
      "ds.json");
  const DeepSpeedConfig c = parse_deepspeed_config(Node(d), DeepSpeedContext{});
  std::set<std::string> keys;
  for (const ResolvedSetting& s : c.provenance)
    keys.insert(s.key);
  std::set<std::string_view> names;
  for (const Knob& k : knobs()) {
    EXPECT_TRUE(names.insert(k.name).second) << "duplicate knob " << k.name;
    EXPECT_EQ(find_knob(k.name), &k);
    if (k.home == KnobHome::kDeepSpeed) {
      EXPECT_TRUE(keys.count(std::string(k.key))) << k.name << " -> " << k.key;
    }
  }
  EXPECT_EQ(find_knob("no_such_knob"), nullptr);
}

}  // namespace
}  // namespace zp::planner
