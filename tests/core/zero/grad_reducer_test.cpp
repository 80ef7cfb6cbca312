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

TEST(GradientReducer, ContiguousAllReduceKeepsArrivalOrder) {
  ZeroSettings s = Settings();
  s.reduce_bucket_size = 1000;
  s.reduce_scatter = false;
  Reduce r({10, 20, 30}, s);
  for (ParamId p : {2, 0, 1})
    r.reducer.grad_ready(p);
  r.reducer.epilogue();
  EXPECT_EQ(r.rec.lines, (std::vector<std::string>{"reduce ar [m2.weight m0.weight m1.weight]"}));
  s.contiguous_gradients = false;  // without the contiguous buffer, reduce-scatter, sorted
  Reduce q({10, 20, 30}, s);
  for (ParamId p : {2, 0, 1})
    q.reducer.grad_ready(p);
  q.reducer.epilogue();
  EXPECT_EQ(q.rec.lines, (std::vector<std::string>{"reduce rs [m0.weight m1.weight m2.weight]"}));
}

}  // namespace
}  // namespace zp::zero
