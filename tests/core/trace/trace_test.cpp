#include "core/trace/trace.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "core/util/error.h"

namespace zp::trace {
namespace {

// The names are part of the file formats (traces/FORMAT.md): changing one breaks old files.
TEST(TraceEnums, StreamNamesAreStable) {
  const std::vector<std::string> expected = {"compute", "allgather", "reduce_scatter", "h2d",
                                             "d2h",     "pipe_send", "pipe_recv",      "host"};
  ASSERT_EQ(expected.size(), kStreamCount);
  for (std::size_t i = 0; i < kStreamCount; ++i) {
    const auto value = static_cast<StreamKind>(i);
    EXPECT_EQ(to_string(value), expected[i]);
    StreamKind back = StreamKind::kCount;
    ASSERT_TRUE(parse(to_string(value), back)) << expected[i];
    EXPECT_EQ(back, value);
  }
}

TEST(TraceEnums, ReleasesAndComputeAreNotTransfers) {
  EXPECT_FALSE(is_transfer(OpKind::kRelease));
  EXPECT_FALSE(is_transfer(OpKind::kForward));
  EXPECT_FALSE(is_transfer(OpKind::kOptimizerStep));
  EXPECT_TRUE(is_transfer(OpKind::kAllGather));
  EXPECT_TRUE(is_transfer(OpKind::kCopyToDevice));
}

TEST(TraceEnums, OpKindNamesAreStable) {
  const std::vector<std::string> expected = {
      "forward",        "backward",       "recompute", "optimizer_step", "allgather",
      "reduce_scatter", "all_reduce",     "broadcast", "send",           "recv",
      "copy_to_host",   "copy_to_device", "release"};
  ASSERT_EQ(expected.size(), static_cast<std::size_t>(OpKind::kCount));
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const auto value = static_cast<OpKind>(i);
    EXPECT_EQ(to_string(value), expected[i]);
    OpKind back = OpKind::kCount;
    ASSERT_TRUE(parse(to_string(value), back)) << expected[i];
    EXPECT_EQ(back, value);
  }
}

TEST(TraceEnums, MemoryCategoryNamesAreStable) {
  const std::vector<std::string> expected = {
      "param_partitions", "gathered_params",  "persistent_params",
      "grad_buckets",     "grad_partitions",  "master_weights",
      "optimizer_states", "activations",      "recompute",
      "pipe_buffers",     "comm_buffers",     "host_params",
      "host_optimizer",   "host_activations", "nvme"};
  ASSERT_EQ(expected.size(), kMemoryCategoryCount);
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const auto value = static_cast<MemoryCategory>(i);
    EXPECT_EQ(to_string(value), expected[i]);
    MemoryCategory back = MemoryCategory::kCount;
    ASSERT_TRUE(parse(to_string(value), back)) << expected[i];
    EXPECT_EQ(back, value);
  }
}

TEST(TraceEnums, UnknownNamesDoNotParseAndLeaveTheOutputAlone) {
  StreamKind stream = StreamKind::kHost;
  EXPECT_FALSE(parse("Compute", stream));  // case matters
  EXPECT_FALSE(parse("", stream));
  EXPECT_EQ(stream, StreamKind::kHost);
  OpKind kind = OpKind::kSend;
  EXPECT_FALSE(parse("all_gather", kind));  // the op is "allgather"
  EXPECT_EQ(kind, OpKind::kSend);
  MemoryCategory category = MemoryCategory::kNvme;
  EXPECT_FALSE(parse("activation", category));
  EXPECT_EQ(category, MemoryCategory::kNvme);
}

TEST(TraceEnums, OutOfRangeValuesAreInternalErrors) {
  EXPECT_THROW(to_string(StreamKind::kCount), InternalError);
  EXPECT_THROW(to_string(OpKind::kCount), InternalError);
  EXPECT_THROW(to_string(MemoryCategory::kCount), InternalError);
}

TEST(TraceEnums, SourceNames) {
  EXPECT_EQ(to_string(Source::kSimulated), "simulated");
  EXPECT_EQ(to_string(Source::kMeasured), "measured");
}

TEST(TraceEnums, DeviceCategoriesAreTheFirstElevenAndHostOnesTheRest) {
  const std::set<MemoryCategory> host = {MemoryCategory::kHostParams,
                                         MemoryCategory::kHostOptimizer,
                                         MemoryCategory::kHostActivations, MemoryCategory::kNvme};
  for (std::size_t i = 0; i < kMemoryCategoryCount; ++i) {
    const auto category = static_cast<MemoryCategory>(i);
    EXPECT_EQ(on_device(category), !host.contains(category)) << to_string(category);
  }
  EXPECT_TRUE(on_device(MemoryCategory::kCommBuffers));
  EXPECT_FALSE(on_device(MemoryCategory::kHostParams));
}

TEST(Trace, InternReturnsOneIndexPerText) {
  Trace t;
  EXPECT_EQ(t.intern("layers.0"), 0);
  EXPECT_EQ(t.intern("layers.1"), 1);
  EXPECT_EQ(t.intern("layers.0"), 0);
  EXPECT_EQ(t.intern(""), 2);  // the empty string is a string like any other
  EXPECT_EQ(t.strings, (std::vector<std::string>{"layers.0", "layers.1", ""}));
  EXPECT_EQ(t.string(1), "layers.1");
}

TEST(Trace, InternFindsStringsFilledByHand) {
  Trace t;
  t.strings = {"a", "b"};  // as a reader fills them
  EXPECT_EQ(t.intern("b"), 1);
  EXPECT_EQ(t.intern("c"), 2);
  EXPECT_EQ(t.strings.size(), 3u);
  t.strings.push_back("d");  // more by hand after interning
  EXPECT_EQ(t.intern("d"), 3);
  EXPECT_EQ(t.intern("e"), 4);
  EXPECT_EQ(t.strings.size(), 5u);
}

// Whatever was done to `strings` by hand, the index intern returns names the text.
TEST(Trace, InternNoticesStringsReplacedByHand) {
  Trace t;
  t.intern("a");
  t.strings = {"b"};  // as many strings as before, other text
  EXPECT_EQ(t.string(t.intern("b")), "b");
  const std::int32_t a = t.intern("a");
  EXPECT_EQ(t.string(a), "a");
  EXPECT_EQ(t.intern("a"), a);

  Trace u;
  u.strings = {"x", "x", "y"};  // duplicates, as a file may hold them
  EXPECT_EQ(u.intern("y"), 2);
  u.strings = {"p", "q"};  // fewer strings than the index's largest entry
  EXPECT_EQ(u.string(u.intern("y")), "y");
  EXPECT_EQ(u.intern("q"), 1);
}

TEST(Trace, InternOnACopyDoesNotTouchTheOriginal) {
  Trace a;
  a.intern("x");
  Trace b = a;
  EXPECT_EQ(b.intern("y"), 1);
  EXPECT_EQ(a.strings.size(), 1u);
  EXPECT_EQ(a.intern("y"), 1);
}

TEST(Trace, StringOutOfRangeIsAnInternalError) {
  Trace t;
  t.intern("x");
  EXPECT_THROW(t.string(1), InternalError);
  EXPECT_THROW(t.string(kNone), InternalError);
}

TEST(Trace, EqualityComparesEveryFieldButNotTheInternIndex) {
  Trace a;
  a.intern("x");
  Trace b;
  b.strings = {"x"};  // same content, no index built
  EXPECT_EQ(a, b);

  const auto differs = [&](auto change) {
    Trace c = a;
    change(c);
    return !(c == a);
  };
  EXPECT_TRUE(differs([](Trace& t) { t.source = Source::kMeasured; }));
  EXPECT_TRUE(differs([](Trace& t) { t.metadata["run"] = "r"; }));
  EXPECT_TRUE(differs([](Trace& t) { t.strings.push_back("y"); }));
  EXPECT_TRUE(differs([](Trace& t) { t.ranks.push_back({}); }));
  EXPECT_TRUE(differs([](Trace& t) { t.groups.push_back({}); }));
  EXPECT_TRUE(differs([](Trace& t) { t.ops.push_back({}); }));
  EXPECT_TRUE(differs([](Trace& t) { t.memory.push_back({}); }));
  EXPECT_TRUE(differs([](Trace& t) { t.reserved.push_back({}); }));
  EXPECT_TRUE(differs([](Trace& t) { t.markers.push_back({}); }));
  EXPECT_TRUE(differs([](Trace& t) { t.allocations.push_back({}); }));
}

TEST(AppendRanks, RemapsRanksStringsAndGroupsOfTheAppendedTrace) {
  Trace a;
  a.ranks.push_back({"rank 0", {0}, 0});
  a.groups.push_back({"data", 2});
  a.ops.push_back(
      Op{.rank = 0, .kind = OpKind::kForward, .start = 0, .end = 5, .name = a.intern("embed")});
  a.markers.push_back(Marker{kNone, 0, a.intern("step 0")});

  Trace b;
  b.ranks.push_back({"rank 1", {1}, 0});
  b.groups.push_back({"world", 2});
  b.groups.push_back({"data", 2});
  b.ops.push_back(Op{.rank = 0,
                     .stream = StreamKind::kAllGather,
                     .kind = OpKind::kAllGather,
                     .start = 1,
                     .end = 3,
                     .name = b.intern("gather 0"),
                     .bytes = 64,
                     .group = 1,
                     .module = b.intern("embed"),
                     .params = b.intern("embed.weight")});
  b.ops.push_back(
      Op{.rank = 0, .kind = OpKind::kForward, .start = 3, .end = 4, .name = b.intern("embed")});
  b.memory.push_back(MemorySample{0, 2, MemoryCategory::kGatheredParams, 64});
  b.markers.push_back(Marker{0, 1, b.intern("step 0")});
  b.allocations.push_back(
      Allocation{0, MemoryCategory::kGatheredParams, 64, 2, kNever, b.intern("embed.weight")});

  append_ranks(a, b);
  ASSERT_EQ(a.ranks.size(), 2u);
  EXPECT_EQ(a.ranks[1].label, "rank 1");
  ASSERT_EQ(a.ops.size(), 3u);
  EXPECT_EQ(a.ops[1].rank, 1);
  EXPECT_EQ(a.string(a.ops[1].name), "gather 0");
  EXPECT_EQ(a.ops[1].module, a.ops[0].name) << "the gather's module, interned again";
  EXPECT_EQ(a.string(a.ops[1].params), "embed.weight");
  // The same "data" group, and "world" added once.
  ASSERT_EQ(a.groups.size(), 2u);
  EXPECT_EQ(a.groups[static_cast<size_t>(a.ops[1].group)].axis, "data");
  EXPECT_EQ(a.ops[2].name, a.ops[0].name);
  ASSERT_EQ(a.memory.size(), 1u);
  EXPECT_EQ(a.memory[0].rank, 1);
  ASSERT_EQ(a.allocations.size(), 1u);
  EXPECT_EQ(a.allocations[0].rank, 1);
  EXPECT_EQ(a.allocations[0].end, kNever);
  EXPECT_EQ(a.string(a.allocations[0].name), "embed.weight");
  ASSERT_EQ(a.markers.size(), 2u);
  EXPECT_EQ(a.markers[0].rank, kNone);
  EXPECT_EQ(a.markers[1].rank, 1);
  EXPECT_EQ(a.markers[1].name, a.markers[0].name);
}

}  // namespace
}  // namespace zp::trace
