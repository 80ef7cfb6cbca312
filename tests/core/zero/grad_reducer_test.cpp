#include "core/zero/grad_reducer.h"

#include <gtest/gtest.h>

#include "zero_test_util.h"

namespace zp::zero {
namespace {

using testing::Chain;
using testing::Recorder;
using testing::Settings;

struct Reduce {
  Reduce(std::vector<std::int64_t> numels, ZeroSettings s)
      : tree(Chain(numels)), model(tree, s), rec(tree), reducer(model, rec) {}
  ModuleTree tree;
  ZeroModel model;
  Recorder rec;
  GradientReducer reducer;
};

TEST(GradientReducer, FlushesBeforeOverflowingAndSortsById) {
  ZeroSettings s = Settings();
  s.reduce_bucket_size = 100;
  Reduce r({30, 40, 50, 60}, s);
  for (ParamId p : {3, 2, 1, 0})
    r.reducer.grad_ready(p);  // 60, 50 (110 > 100: flush 60 first), 40, 30
  r.reducer.epilogue();
  EXPECT_EQ(r.rec.lines,
            (std::vector<std::string>{"reduce rs [m3.weight]", "reduce rs [m1.weight m2.weight]",
                                      "reduce rs [m0.weight]"}));
}

TEST(GradientReducer, ExactlyFullBucketIsNotFlushedEarly) {
  ZeroSettings s = Settings();
  s.reduce_bucket_size = 100;
  Reduce r({40, 60, 1}, s);
  r.reducer.grad_ready(0);
  r.reducer.grad_ready(1);  // 100: fits exactly
  EXPECT_TRUE(r.rec.lines.empty());
  r.reducer.grad_ready(2);
  EXPECT_EQ(r.rec.lines, (std::vector<std::string>{"reduce rs [m0.weight m1.weight]"}));
}

TEST(GradientReducer, AGradientLargerThanTheBucketGoesAlone) {
  ZeroSettings s = Settings();
  s.reduce_bucket_size = 100;
  s.reduce_scatter = false;
  Reduce r({10, 500, 20}, s);
  for (ParamId p : {0, 1, 2})
    r.reducer.grad_ready(p);
  r.reducer.epilogue();
  // The oversized bucket cannot use the contiguous buffer: it is reduce-scattered even with
  // reduce_scatter off; the others are all-reduced.
  EXPECT_EQ(r.rec.lines, (std::vector<std::string>{"reduce ar [m0.weight]", "reduce rs [m1.weight]",
                                                   "reduce ar [m2.weight]"}));
  EXPECT_EQ(r.rec.buckets[1].contiguous_numel, 0);
}

TEST(GradientReducer, OnlyGradientsThatFitAreCopiedIntoTheContiguousBuffer) {
  ZeroSettings s = Settings();
  s.reduce_bucket_size = 100;
  Reduce r({10, 500, 20, 90}, s);
  r.rec.lifetimes = true;
  for (ParamId p : {0, 1, 2, 3})
    r.reducer.grad_ready(p);
  // The 500 overflows and goes as it is, after the flush of what came before; 20 + 90 > 100, so
  // the 90 flushes the 20 first and is then copied into an empty buffer.
  EXPECT_EQ(r.rec.lines, (std::vector<std::string>{"add m0.weight copied", "reduce rs [m0.weight]",
                                                   "add m1.weight as is", "reduce rs [m1.weight]",
                                                   "add m2.weight copied", "reduce rs [m2.weight]",
                                                   "add m3.weight copied"}));
  s.contiguous_gradients = false;
  Reduce off({10}, s);
  off.rec.lifetimes = true;
  off.reducer.grad_ready(0);
  EXPECT_EQ(off.rec.lines, (std::vector<std::string>{"add m0.weight as is"}));
}

TEST(GradientReducer, ContiguousAllReduceKeepsArrivalOrder) {
  ZeroSettings s = Settings();
  s.reduce_bucket_size = 1000;
  s.reduce_scatter = false;
  Reduce r({10, 20, 30}, s);
  for (ParamId p : {2, 0, 1})
    r.reducer.grad_ready(p);
  r.reducer.epilogue();
  EXPECT_EQ(r.rec.lines, (std::vector<std::string>{"reduce ar [m2.weight m0.weight m1.weight]"}));
  EXPECT_EQ(r.rec.buckets[0].reduced_numel, 60);
  s.contiguous_gradients = false;  // without the contiguous buffer, reduce-scatter, sorted
  Reduce q({10, 20, 30}, s);
  for (ParamId p : {2, 0, 1})
    q.reducer.grad_ready(p);
  q.reducer.epilogue();
  EXPECT_EQ(q.rec.lines, (std::vector<std::string>{"reduce rs [m0.weight m1.weight m2.weight]"}));
}

}  // namespace
}  // namespace zp::zero

namespace zp::zero {
namespace {

TEST(GradientBuffers, SizeDtypeAndPlaceFollowTheConfig) {
  testing::TreeBuilder b;
  b.add(0, "a", "Linear", {10});
  b.add(0, "f", "Embedding", {6}, /*requires_grad=*/false);
  b.add(0, "c", "Linear", {7});
  ZeroSettings s = testing::Settings(4);
  s.reduce_bucket_size = 1000;
  s.compute_dtype = DType::kBFloat16;
  s.grad_accum_dtype = DType::kBFloat16;
  const ZeroModel model(b.tree(), s);
  GradientBuffers g = gradient_buffers(model);
  EXPECT_EQ(g.bucket_numel, 1000);
  EXPECT_EQ(g.bucket_bytes(), 2000);
  EXPECT_EQ(g.partition_numel, 3 + 2);  // trainable parameters only, padded partitions
  EXPECT_FALSE(g.partitions_on_host);
  s.contiguous_gradients = false;
  s.offload_optimizer = OffloadDevice::kCpu;
  s.offload_optimizer_pin_memory = true;
  s.grad_accum_dtype = DType::kFloat32;
  g = gradient_buffers(ZeroModel(b.tree(), s));
  EXPECT_EQ(g.bucket_numel, 0);
  EXPECT_TRUE(g.partitions_on_host);
  EXPECT_TRUE(g.partitions_pinned);
  EXPECT_EQ(g.partition_bytes(), 5 * 4);
}

TEST(GradientBuffers, SettingsFromTheDeepSpeedConfig) {
  const Document d = Document::from_json(
      R"({"train_micro_batch_size_per_gpu": 1, "bf16": {"enabled": true},
          "zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu", "pin_memory": true}}})",
      "ds.json");
  const ZeroSettings s = ZeroSettings::from(parse_deepspeed_config(Node(d), DeepSpeedContext{}), 8);
  EXPECT_EQ(s.compute_dtype, DType::kBFloat16);
  EXPECT_EQ(s.grad_accum_dtype, DType::kBFloat16);  // ZeRO accumulates in the model's dtype
  EXPECT_EQ(s.offload_optimizer, OffloadDevice::kCpu);
  const Document e = Document::from_json(
      R"({"train_micro_batch_size_per_gpu": 1, "bf16": {"enabled": true}, "data_types": {"grad_accum_dtype": "fp32"}})",
      "ds.json");
  EXPECT_EQ(
      ZeroSettings::from(parse_deepspeed_config(Node(e), DeepSpeedContext{}), 8).grad_accum_dtype,
      DType::kFloat32);
  const Document bad = Document::from_json(
      R"({"train_micro_batch_size_per_gpu": 1, "data_types": {"grad_accum_dtype": "int8"}})",
      "ds.json");
  EXPECT_THROW(parse_deepspeed_config(Node(bad), DeepSpeedContext{}), UserError);
}

}  // namespace
}  // namespace zp::zero
