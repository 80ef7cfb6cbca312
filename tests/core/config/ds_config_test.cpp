// Every DeepSpeed config rule zeroplan reproduces, each with a case that fails if the rule changes.
// Expected values come from DeepSpeed's own config models (see core/config/ds_config.h).
#include "core/config/ds_config.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>

namespace zp {
namespace {

DeepSpeedContext Context(std::int64_t data = 1) {
  DeepSpeedContext c;
  c.data_parallel_size = data;
  return c;
}

DeepSpeedConfig Parse(const std::string& json, const DeepSpeedContext& context = Context()) {
  Document doc = Document::from_json(json, "ds.json");
  return parse_deepspeed_config(Node(doc), context);
}

// The config with a micro batch, so that the batch rule is satisfied.
DeepSpeedConfig ParseZero(const std::string& zero_body) {
  return Parse(R"({"train_micro_batch_size_per_gpu": 1, "zero_optimization": {)" + zero_body +
               "}}");
}

UserError ErrorOf(const std::string& json, const DeepSpeedContext& context = Context()) {
  try {
    Parse(json, context);
  } catch (const UserError& e) {
    return e;
  }
  ADD_FAILURE() << "no error for " << json;
  return UserError(ErrorKind::kValue, {}, "none");
}

UserError ZeroErrorOf(const std::string& zero_body) {
  return ErrorOf(R"({"train_micro_batch_size_per_gpu": 1, "zero_optimization": {)" + zero_body +
                 "}}");
}

const ResolvedSetting* Find(const DeepSpeedConfig& c, const std::string& key) {
  for (const ResolvedSetting& s : c.provenance) {
    if (s.key == key) return &s;
  }
  return nullptr;
}

bool HasWarning(const DeepSpeedConfig& c, const std::string& text) {
  for (const Warning& w : c.warnings) {
    if (w.str().find(text) != std::string::npos) return true;
  }
  return false;
}

TEST(DeepSpeedZeroConfig, DefaultsAreDeepSpeeds) {
  const ZeroConfig z = ParseZero("").zero;
  EXPECT_EQ(z.stage, 0);
  EXPECT_TRUE(z.contiguous_gradients);
  EXPECT_TRUE(z.reduce_scatter);
  EXPECT_EQ(z.reduce_bucket_size, 500'000'000);
  EXPECT_TRUE(z.use_multi_rank_bucket_allreduce);
  EXPECT_TRUE(z.allgather_partitions);
  EXPECT_EQ(z.allgather_bucket_size, 500'000'000);
  EXPECT_FALSE(z.overlap_comm);
  EXPECT_TRUE(z.load_from_fp32_weights);
  EXPECT_FALSE(z.elastic_checkpoint);
  EXPECT_FALSE(z.offload_param);
  EXPECT_FALSE(z.offload_optimizer);
  EXPECT_EQ(z.sub_group_size, 1'000'000'000);
  EXPECT_EQ(z.prefetch_bucket_size, 50'000'000);
  EXPECT_EQ(z.param_persistence_threshold, 100'000);
  EXPECT_EQ(z.model_persistence_threshold, INT64_MAX);
  EXPECT_EQ(z.max_live_parameters, 1'000'000'000);
  EXPECT_EQ(z.max_reuse_distance, 1'000'000'000);
  EXPECT_FALSE(z.gather_16bit_weights_on_model_save);
  EXPECT_EQ(z.module_granularity_threshold, 0);
  EXPECT_FALSE(z.use_all_reduce_for_fetch_params);
  EXPECT_TRUE(z.ignore_unused_parameters);
  EXPECT_FALSE(z.legacy_stage1);
  EXPECT_FALSE(z.round_robin_gradients);
  EXPECT_EQ(z.zero_hpz_partition_size, 1);
  EXPECT_FALSE(z.zero_quantized_weights);
  EXPECT_FALSE(z.zero_quantized_nontrainable_weights);
  EXPECT_FALSE(z.zero_quantized_gradients);
  EXPECT_FALSE(z.zeropp_loco_param);
  EXPECT_EQ(z.mics_shard_size, -1);
  EXPECT_FALSE(z.mics_hierarchical_params_gather);
  EXPECT_TRUE(z.memory_efficient_linear);
  EXPECT_FALSE(z.pipeline_loading_checkpoint);
  EXPECT_TRUE(z.override_module_apply);
  EXPECT_FALSE(z.log_trace_cache_warnings);
}

TEST(DeepSpeedZeroConfig, AbsentSectionIsStageZero) {
  const DeepSpeedConfig c = Parse(R"({"train_micro_batch_size_per_gpu": 1})");
  EXPECT_EQ(c.zero.stage, 0);
  EXPECT_EQ(Find(c, "zero_optimization.stage")->origin, Origin::kDefault);
}

TEST(DeepSpeedZeroConfig, EverySettingIsRecordedWithItsOrigin) {
  const DeepSpeedConfig c = ParseZero(R"("stage": 3, "stage3_max_live_parameters": 5)");
  EXPECT_EQ(Find(c, "zero_optimization.stage")->origin, Origin::kUser);
  EXPECT_EQ(Find(c, "zero_optimization.stage3_max_live_parameters")->value, 5);
  EXPECT_EQ(Find(c, "zero_optimization.stage3_max_live_parameters")->origin, Origin::kUser);
  EXPECT_EQ(Find(c, "zero_optimization.stage3_max_reuse_distance")->origin, Origin::kDefault);
  for (const char* key : {"zero_optimization.sub_group_size", "zero_optimization.mics_shard_size",
                          "zero_optimization.log_trace_cache_warnings",
                          "zero_optimization.stage3_module_granularity_threshold",
                          "activation_checkpointing.partition_activations", "pipeline.partition",
                          "bf16.enabled", "fp16.enabled", "train_batch_size"}) {
    EXPECT_NE(Find(c, key), nullptr) << key;
  }
}

TEST(DeepSpeedZeroConfig, BothSpellingsOfAnAliasedKeyAreAccepted) {
  struct Case {
    const char* canonical;
    const char* alias;
    std::int64_t ZeroConfig::*field;
  };
  for (const Case& c :
       {Case{"stage3_max_live_parameters", "max_live_parameters", &ZeroConfig::max_live_parameters},
        Case{"stage3_max_reuse_distance", "max_reuse_distance", &ZeroConfig::max_reuse_distance},
        Case{"stage3_prefetch_bucket_size", "prefetch_bucket_size",
             &ZeroConfig::prefetch_bucket_size},
        Case{"stage3_param_persistence_threshold", "param_persistence_threshold",
             &ZeroConfig::param_persistence_threshold},
        Case{"stage3_model_persistence_threshold", "model_persistence_threshold",
             &ZeroConfig::model_persistence_threshold},
        Case{"stage3_module_granularity_threshold", "module_granularity_threshold",
             &ZeroConfig::module_granularity_threshold}}) {
    EXPECT_EQ(ParseZero(std::string("\"") + c.canonical + "\": 1234").zero.*c.field, 1234)
        << c.canonical;
    const DeepSpeedConfig by_alias = ParseZero(std::string("\"") + c.alias + "\": 4321");
    EXPECT_EQ(by_alias.zero.*c.field, 4321) << c.alias;
    EXPECT_EQ(Find(by_alias, std::string("zero_optimization.") + c.canonical)->note,
              std::string("written as ") + c.alias);
  }
  EXPECT_TRUE(ParseZero(R"("gather_16bit_weights_on_model_save": true)")
                  .zero.gather_16bit_weights_on_model_save);
  EXPECT_TRUE(
      ParseZero(R"("use_all_reduce_for_fetch_params": true)").zero.use_all_reduce_for_fetch_params);
}

TEST(DeepSpeedZeroConfig, BothSpellingsAtOnceAreAConflict) {
  const UserError e = ZeroErrorOf(R"("stage3_max_live_parameters": 5, "max_live_parameters": 7)");
  EXPECT_EQ(e.kind(), ErrorKind::kConflict);
  EXPECT_NE(std::string(e.what()).find("stage3_max_live_parameters"), std::string::npos);
  EXPECT_NE(std::string(e.what()).find("'max_live_parameters'"), std::string::npos);
}

TEST(DeepSpeedZeroConfig, NonNegativeChecksMatchDeepSpeed) {
  // Fields declared with ge=0 in DeepSpeed.
  for (const char* key :
       {"reduce_bucket_size", "allgather_bucket_size", "sub_group_size",
        "stage3_prefetch_bucket_size", "stage3_param_persistence_threshold",
        "stage3_model_persistence_threshold", "stage3_max_live_parameters",
        "stage3_max_reuse_distance", "zero_hpz_partition_size", "max_live_parameters"}) {
    const UserError e = ZeroErrorOf(std::string("\"") + key + "\": -1");
    EXPECT_EQ(e.kind(), ErrorKind::kValue) << key;
    EXPECT_EQ(e.where().key_path, std::string("zero_optimization.") + key);
    EXPECT_NE(std::string(e.what()).find("must be >= 0"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("-1"), std::string::npos) << e.what();
    EXPECT_EQ(ParseZero(std::string("\"") + key + "\": 0").provenance.empty(), false);
  }
  // Fields without the check: DeepSpeed accepts negative values.
  EXPECT_EQ(
      ParseZero(R"("stage3_module_granularity_threshold": -5)").zero.module_granularity_threshold,
      -5);
  EXPECT_EQ(ParseZero(R"("mics_shard_size": -3)").zero.mics_shard_size, -3);
}

TEST(DeepSpeedZeroConfig, LaxIntegersAsPydanticValidatesThem) {
  EXPECT_EQ(ParseZero(R"("stage3_max_live_parameters": 1e9)").zero.max_live_parameters,
            1'000'000'000);
  EXPECT_EQ(ParseZero(R"("stage3_max_live_parameters": "100")").zero.max_live_parameters, 100);
  EXPECT_EQ(ParseZero(R"("stage3_max_live_parameters": " 100 ")").zero.max_live_parameters, 100);
  EXPECT_EQ(ParseZero(R"("stage3_max_live_parameters": "1_000")").zero.max_live_parameters, 1000);
  EXPECT_EQ(ParseZero(R"("stage3_max_live_parameters": "100.0")").zero.max_live_parameters, 100);
  EXPECT_EQ(ParseZero(R"("stage3_max_live_parameters": true)").zero.max_live_parameters, 1);
  EXPECT_EQ(ParseZero(R"("stage3_max_live_parameters": false)").zero.max_live_parameters, 0);
  EXPECT_EQ(ZeroErrorOf(R"("stage3_max_live_parameters": 1.5)").kind(), ErrorKind::kType);
  EXPECT_EQ(ZeroErrorOf(R"("stage3_max_live_parameters": "1e3")").kind(), ErrorKind::kType);
  EXPECT_EQ(ZeroErrorOf(R"("stage3_max_live_parameters": "1__0")").kind(), ErrorKind::kType);
  EXPECT_EQ(ZeroErrorOf(R"("stage3_max_live_parameters": null)").kind(), ErrorKind::kType);
  EXPECT_EQ(ZeroErrorOf(R"("stage3_max_live_parameters": [1])").kind(), ErrorKind::kType);
  EXPECT_EQ(ZeroErrorOf(R"("stage3_max_live_parameters": 1e30)").kind(), ErrorKind::kValue);
  const DeepSpeedConfig c = ParseZero(R"("stage3_max_live_parameters": "100")");
  EXPECT_NE(Find(c, "zero_optimization.stage3_max_live_parameters")->note.find("given as a string"),
            std::string::npos);
}

TEST(DeepSpeedZeroConfig, LaxBooleansAsPydanticValidatesThem) {
  for (const char* yes :
       {"true", "\"yes\"", "\"on\"", "\"t\"", "\"True\"", "\"Y\"", "\"1\"", "1", "1.0"}) {
    EXPECT_TRUE(
        ParseZero(
            std::string("\"stage\": 3, \"contiguous_gradients\": false, \"reduce_scatter\": ") +
            yes)
            .zero.reduce_scatter)
        << yes;
  }
  for (const char* no : {"false", "\"no\"", "\"off\"", "\"f\"", "\"0\"", "0", "0.0"}) {
    EXPECT_FALSE(ParseZero(std::string("\"reduce_scatter\": ") + no).zero.reduce_scatter) << no;
  }
  for (const char* bad : {"2", "0.5", "\" yes\"", "\"maybe\"", "null", "{}"}) {
    EXPECT_EQ(ZeroErrorOf(std::string("\"reduce_scatter\": ") + bad).kind(), ErrorKind::kType)
        << bad;
  }
}

TEST(DeepSpeedZeroConfig, AutoMeansTheDefault) {
  const DeepSpeedConfig c = ParseZero(
      R"("stage": 3, "stage3_max_live_parameters": "auto", "reduce_bucket_size": "auto")");
  EXPECT_EQ(c.zero.max_live_parameters, 1'000'000'000);
  EXPECT_EQ(c.zero.reduce_bucket_size, 500'000'000);
  EXPECT_EQ(Find(c, "zero_optimization.reduce_bucket_size")->origin, Origin::kDefault);
  EXPECT_EQ(ParseZero(R"("stage": "auto")").zero.stage, 0);
  const DeepSpeedConfig d =
      ParseZero(R"("stage": 3, "offload_optimizer": {"device": "auto", "ratio": "auto"})");
  ASSERT_TRUE(d.zero.offload_optimizer);
  EXPECT_EQ(d.zero.offload_optimizer->device, OffloadDevice::kNone);
  EXPECT_EQ(d.zero.offload_optimizer->ratio, 1.0);
}

TEST(DeepSpeedZeroConfig, StageMustBeZeroToThree) {
  EXPECT_EQ(ParseZero(R"("stage": "3")").zero.stage, 3);
  EXPECT_EQ(ParseZero(R"("stage": 3.0)").zero.stage, 3);
  for (const char* bad : {"4", "-1"}) {
    const UserError e = ZeroErrorOf(std::string("\"stage\": ") + bad);
    EXPECT_EQ(e.kind(), ErrorKind::kValue);
    EXPECT_EQ(e.where().key_path, "zero_optimization.stage");
  }
}

TEST(DeepSpeedZeroConfig, UnknownKeysAreRejectedWithASuggestion) {
  const UserError e = ZeroErrorOf(R"("stage": 3, "stage3_max_live_parameter": 5)");
  EXPECT_EQ(e.kind(), ErrorKind::kUnknownKey);
  EXPECT_EQ(e.where().key_path, "zero_optimization.stage3_max_live_parameter");
  EXPECT_NE(std::string(e.what()).find("did you mean 'stage3_max_live_parameters'"),
            std::string::npos)
      << e.what();
  const UserError o =
      ZeroErrorOf(R"("stage": 3, "offload_optimizer": {"device": "cpu", "pin_memroy": true})");
  EXPECT_EQ(o.kind(), ErrorKind::kUnknownKey);
  EXPECT_NE(std::string(o.what()).find("'pin_memory'"), std::string::npos) << o.what();
  // ratio belongs to offload_optimizer only.
  EXPECT_EQ(ZeroErrorOf(R"("stage": 3, "offload_param": {"device": "cpu", "ratio": 0.5})").kind(),
            ErrorKind::kUnknownKey);
}

TEST(DeepSpeedZeroConfig, OverlapCommDefaultsToTrueOnlyForStageThree) {
  for (int stage = 0; stage <= 3; ++stage) {
    const DeepSpeedConfig c = ParseZero("\"stage\": " + std::to_string(stage));
    EXPECT_EQ(c.zero.overlap_comm, stage == 3) << stage;
    EXPECT_EQ(Find(c, "zero_optimization.overlap_comm")->origin, Origin::kInferred);
  }
  EXPECT_TRUE(ParseZero(R"("stage": 3, "overlap_comm": null)").zero.overlap_comm);
  EXPECT_FALSE(ParseZero(R"("stage": 3, "overlap_comm": false)").zero.overlap_comm);
  EXPECT_TRUE(ParseZero(R"("stage": 1, "overlap_comm": true)").zero.overlap_comm);
}

TEST(DeepSpeedZeroConfig, LegacyBooleanForm) {
  const DeepSpeedConfig on = Parse(
      R"({"train_micro_batch_size_per_gpu": 1, "zero_optimization": true, "allgather_size": 100})");
  EXPECT_EQ(on.zero.stage, 1);
  EXPECT_EQ(on.zero.allgather_bucket_size, 100);
  EXPECT_EQ(Find(on, "zero_optimization.allgather_bucket_size")->origin, Origin::kDeprecated);
  EXPECT_TRUE(HasWarning(on, "deprecated"));
  EXPECT_EQ(Parse(R"({"train_micro_batch_size_per_gpu": 1, "zero_optimization": true})")
                .zero.allgather_bucket_size,
            500'000'000);
  const DeepSpeedConfig off = Parse(
      R"({"train_micro_batch_size_per_gpu": 1, "zero_optimization": false, "allgather_size": 100})");
  EXPECT_EQ(off.zero.stage, 0);
  EXPECT_EQ(off.zero.allgather_bucket_size, 500'000'000);
  EXPECT_EQ(
      ErrorOf(
          R"({"train_micro_batch_size_per_gpu": 1, "zero_optimization": true, "allgather_size": -1})")
          .kind(),
      ErrorKind::kValue);
  EXPECT_EQ(ErrorOf(R"({"train_micro_batch_size_per_gpu": 1, "zero_optimization": 5})").kind(),
            ErrorKind::kType);
}

TEST(DeepSpeedZeroConfig, CpuOffloadMapsToOffloadOptimizer) {
  const DeepSpeedConfig on = ParseZero(R"("stage": 3, "cpu_offload": true)");
  ASSERT_TRUE(on.zero.offload_optimizer);
  EXPECT_EQ(on.zero.offload_optimizer->device, OffloadDevice::kCpu);
  EXPECT_EQ(on.zero.offload_optimizer->buffer_count, 4);  // the section's defaults
  EXPECT_FALSE(on.zero.offload_param);
  EXPECT_EQ(Find(on, "zero_optimization.offload_optimizer.device")->origin, Origin::kDeprecated);
  EXPECT_TRUE(HasWarning(on, "'cpu_offload' is deprecated"));
  EXPECT_FALSE(ParseZero(R"("stage": 3, "cpu_offload": false)").zero.offload_optimizer);
  // "auto" is dropped before the deprecation is looked at.
  EXPECT_FALSE(ParseZero(R"("stage": 3, "cpu_offload": "auto")").zero.offload_optimizer);
  for (const char* value : {"true", "false"}) {
    const UserError e = ZeroErrorOf(
        std::string(R"("stage": 3, "offload_optimizer": {"device": "nvme"}, "cpu_offload": )") +
        value);
    EXPECT_EQ(e.kind(), ErrorKind::kConflict) << value;
  }
}

TEST(DeepSpeedZeroConfig, CpuOffloadParamMapsToOffloadParam) {
  const DeepSpeedConfig on = ParseZero(R"("stage": 3, "cpu_offload_param": true)");
  ASSERT_TRUE(on.zero.offload_param);
  EXPECT_EQ(on.zero.offload_param->device, OffloadDevice::kCpu);
  EXPECT_EQ(on.zero.offload_param->buffer_count, 5);
  EXPECT_FALSE(on.zero.offload_optimizer);
  EXPECT_EQ(ZeroErrorOf(R"("stage": 3, "cpu_offload_param": true, "offload_param": null)").kind(),
            ErrorKind::kConflict);
}

TEST(DeepSpeedZeroConfig, CpuOffloadUsePinMemoryOnlyWarns) {
  const DeepSpeedConfig c = ParseZero(R"("stage": 3, "cpu_offload_use_pin_memory": true)");
  EXPECT_FALSE(c.zero.offload_param);
  EXPECT_FALSE(c.zero.offload_optimizer);
  EXPECT_EQ(c.zero.cpu_offload_use_pin_memory, true);
  EXPECT_TRUE(HasWarning(c, "'cpu_offload_use_pin_memory' is deprecated"));
}

TEST(DeepSpeedZeroConfig, GatherFp16WeightsMapsToGather16Bit) {
  const DeepSpeedConfig c =
      ParseZero(R"("stage": 3, "stage3_gather_fp16_weights_on_model_save": true)");
  EXPECT_TRUE(c.zero.gather_16bit_weights_on_model_save);
  EXPECT_EQ(Find(c, "zero_optimization.stage3_gather_16bit_weights_on_model_save")->origin,
            Origin::kDeprecated);
  EXPECT_TRUE(HasWarning(c, "deprecated"));
  for (const char* replacement :
       {"stage3_gather_16bit_weights_on_model_save", "gather_16bit_weights_on_model_save"}) {
    EXPECT_EQ(ZeroErrorOf(std::string(R"("stage3_gather_fp16_weights_on_model_save": true, ")") +
                          replacement + "\": false")
                  .kind(),
              ErrorKind::kConflict);
  }
}

TEST(DeepSpeedZeroConfig, OffloadSectionsHaveTheirDefaults) {
  const DeepSpeedConfig c = ParseZero(
      R"("stage": 3, "offload_param": {}, "offload_optimizer": {"device": "nvme", "nvme_path": "/nvme"})");
  ASSERT_TRUE(c.zero.offload_param);
  EXPECT_EQ(c.zero.offload_param->device, OffloadDevice::kNone);
  EXPECT_EQ(c.zero.offload_param->buffer_count, 5);
  EXPECT_EQ(c.zero.offload_param->buffer_size, 100'000'000);
  EXPECT_EQ(c.zero.offload_param->max_in_cpu, 1'000'000'000);
  EXPECT_FALSE(c.zero.offload_param->pin_memory);
  ASSERT_TRUE(c.zero.offload_optimizer);
  EXPECT_EQ(c.zero.offload_optimizer->device, OffloadDevice::kNvme);
  EXPECT_EQ(c.zero.offload_optimizer->nvme_path, "/nvme");
  EXPECT_EQ(c.zero.offload_optimizer->buffer_count, 4);
  EXPECT_EQ(c.zero.offload_optimizer->ratio, 1.0);
  EXPECT_FALSE(c.zero.offload_optimizer->pipeline());
  EXPECT_TRUE(ParseZero(R"("offload_optimizer": {"pipeline_write": true})")
                  .zero.offload_optimizer->pipeline());
  EXPECT_FALSE(ParseZero(R"("offload_optimizer": null)").zero.offload_optimizer);
}

TEST(DeepSpeedZeroConfig, OffloadDeviceIsNoneCpuOrNvme) {
  for (const char* bad : {"\"gpu\"", "\"CPU\"", "1", "true"}) {
    const UserError e = ZeroErrorOf(std::string(R"("offload_optimizer": {"device": )") + bad + "}");
    EXPECT_EQ(e.kind(), ErrorKind::kValue) << bad;
    EXPECT_EQ(e.where().key_path, "zero_optimization.offload_optimizer.device");
  }
  EXPECT_NE(std::string(ZeroErrorOf(R"("offload_param": {"device": "cpi"})").what())
                .find("did you mean 'cpu'"),
            std::string::npos);
  EXPECT_EQ(ZeroErrorOf(R"("offload_optimizer": "cpu")").kind(), ErrorKind::kType);
  EXPECT_EQ(ZeroErrorOf(R"("offload_param": {"nvme_path": 5})").kind(), ErrorKind::kType);
  EXPECT_EQ(ZeroErrorOf(R"("offload_param": {"buffer_count": -1})").kind(), ErrorKind::kValue);
}

TEST(DeepSpeedZeroConfig, PartialOffloadNeedsStageThree) {
  for (int stage = 0; stage <= 2; ++stage) {
    const UserError e = ZeroErrorOf("\"stage\": " + std::to_string(stage) +
                                    R"(, "offload_optimizer": {"device": "cpu", "ratio": 0.5})");
    EXPECT_EQ(e.kind(), ErrorKind::kConflict) << stage;
    EXPECT_EQ(e.where().key_path, "zero_optimization.offload_optimizer.ratio");
  }
  // The rule looks at the ratio whatever the device.
  EXPECT_EQ(
      ZeroErrorOf(R"("stage": 2, "offload_optimizer": {"device": "none", "ratio": 0.5})").kind(),
      ErrorKind::kConflict);
  EXPECT_EQ(ParseZero(R"("stage": 3, "offload_optimizer": {"device": "cpu", "ratio": 0.5})")
                .zero.offload_optimizer->ratio,
            0.5);
  EXPECT_EQ(ParseZero(R"("stage": 3, "offload_optimizer": {"device": "cpu", "ratio": 0})")
                .zero.offload_optimizer->ratio,
            0.0);
  EXPECT_EQ(ParseZero(R"("stage": 2, "offload_optimizer": {"device": "cpu", "ratio": 1})")
                .zero.offload_optimizer->ratio,
            1.0);
  EXPECT_EQ(ZeroErrorOf(R"("stage": 3, "offload_optimizer": {"ratio": 1.5})").kind(),
            ErrorKind::kValue);
  EXPECT_EQ(ZeroErrorOf(R"("stage": 3, "offload_optimizer": {"ratio": -0.1})").kind(),
            ErrorKind::kValue);
  EXPECT_EQ(ParseZero(R"("stage": 3, "offload_optimizer": {"ratio": "0.25"})")
                .zero.offload_optimizer->ratio,
            0.25);
}

TEST(DeepSpeedZeroConfig, LocoParamMustBeAMapping) {
  EXPECT_EQ(ZeroErrorOf(R"("zeropp_loco_param": 5)").kind(), ErrorKind::kType);
  EXPECT_TRUE(ParseZero(R"("zeropp_loco_param": {"err_beta": 0.8})").zero.zeropp_loco_param);
}

TEST(DeepSpeedActivationCheckpointing, DefaultsAndTypes) {
  const ActivationCheckpointingConfig a =
      Parse(R"({"train_micro_batch_size_per_gpu": 1})").activation_checkpointing;
  EXPECT_FALSE(a.partition_activations);
  EXPECT_FALSE(a.contiguous_memory_optimization);
  EXPECT_FALSE(a.cpu_checkpointing);
  EXPECT_FALSE(a.number_checkpoints);
  EXPECT_FALSE(a.synchronize_checkpoint_boundary);
  EXPECT_FALSE(a.profile);
  EXPECT_EQ(
      ErrorOf(
          R"({"train_micro_batch_size_per_gpu": 1, "activation_checkpointing": {"cpu_checkpointing": "yes"}})")
          .kind(),
      ErrorKind::kType);
}

TEST(DeepSpeedActivationCheckpointing, ContiguousNeedsPartitionedActivations) {
  const UserError e = ErrorOf(
      R"({"train_micro_batch_size_per_gpu": 1, "activation_checkpointing": {"contiguous_memory_optimization": true, "number_checkpoints": 4}})");
  EXPECT_EQ(e.kind(), ErrorKind::kConflict);
  EXPECT_EQ(e.where().key_path, "activation_checkpointing.contiguous_memory_optimization");
}

TEST(DeepSpeedActivationCheckpointing, ContiguousNeedsNumberCheckpoints) {
  EXPECT_EQ(
      ErrorOf(
          R"({"train_micro_batch_size_per_gpu": 1, "activation_checkpointing": {"contiguous_memory_optimization": true, "partition_activations": true}})")
          .kind(),
      ErrorKind::kMissing);
  const DeepSpeedConfig ok = Parse(
      R"({"train_micro_batch_size_per_gpu": 1, "activation_checkpointing": {"contiguous_memory_optimization": true, "partition_activations": true, "number_checkpoints": 0}})");
  EXPECT_EQ(ok.activation_checkpointing.number_checkpoints, 0);
}

TEST(DeepSpeedActivationCheckpointing, UnknownKeysWarnBecauseDeepSpeedIgnoresThem) {
  const DeepSpeedConfig c = Parse(
      R"({"train_micro_batch_size_per_gpu": 1, "activation_checkpointing": {"partitioned_activations": true}})");
  EXPECT_FALSE(c.activation_checkpointing.partition_activations);
  EXPECT_TRUE(HasWarning(c, "did you mean 'partition_activations'"));
}

TEST(DeepSpeedPipeline, Section) {
  DeepSpeedContext two = Context(2);
  two.pipeline_parallel_size = 2;
  const DeepSpeedConfig c = Parse(
      R"({"train_micro_batch_size_per_gpu": 1, "pipeline": {"stages": 2, "partition": "type:Block", "activation_checkpoint_interval": 1}})",
      two);
  EXPECT_EQ(c.pipeline.stages, 2);
  EXPECT_EQ(c.pipeline.partition, "type:Block");
  EXPECT_EQ(c.pipeline.activation_checkpoint_interval, 1);
  EXPECT_EQ(c.pipeline.use_reentrant, true);  // DeepSpeed's default once checkpointing is on
  EXPECT_TRUE(c.pipeline.pipe_partitioned);
  EXPECT_TRUE(c.pipeline.grad_partitioned);
  EXPECT_FALSE(Parse(R"({"train_micro_batch_size_per_gpu": 1})").pipeline.use_reentrant);
  EXPECT_FALSE(Parse(R"({"train_micro_batch_size_per_gpu": 1})").pipeline.stages);
  EXPECT_EQ(Parse(R"({"train_micro_batch_size_per_gpu": 1, "pipeline": {"partition": "best"}})")
                .pipeline.partition,
            "parameters");
  EXPECT_EQ(
      ErrorOf(R"({"train_micro_batch_size_per_gpu": 1, "pipeline": {"stages": 4}})", two).kind(),
      ErrorKind::kConflict);
  EXPECT_EQ(
      ErrorOf(
          R"({"train_micro_batch_size_per_gpu": 1, "pipeline": {"activation_checkpoint_interval": -1}})")
          .kind(),
      ErrorKind::kValue);
  const UserError p =
      ErrorOf(R"({"train_micro_batch_size_per_gpu": 1, "pipeline": {"partition": "paramters"}})");
  EXPECT_NE(std::string(p.what()).find("did you mean 'parameters'"), std::string::npos) << p.what();
  EXPECT_EQ(ErrorOf(R"({"train_micro_batch_size_per_gpu": 1, "pipeline": {"pipe_partitioned": 1}})")
                .kind(),
            ErrorKind::kType);
}

TEST(DeepSpeedPipeline, ZeroTwoAndThreeCannotBePipelined) {
  DeepSpeedContext pp = Context(1);
  pp.pipeline_parallel_size = 2;
  for (int stage : {2, 3}) {
    EXPECT_EQ(ErrorOf(R"({"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": )" +
                          std::to_string(stage) + "}}",
                      pp)
                  .kind(),
              ErrorKind::kConflict);
  }
  EXPECT_EQ(Parse(R"({"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 1}})", pp)
                .zero.stage,
            1);
}

TEST(DeepSpeedPrecision, Bf16AndFp16) {
  EXPECT_EQ(Parse(R"({"train_micro_batch_size_per_gpu": 1})").compute_dtype(), DType::kFloat32);
  EXPECT_EQ(
      Parse(R"({"train_micro_batch_size_per_gpu": 1, "bf16": {"enabled": true}})").compute_dtype(),
      DType::kBFloat16);
  EXPECT_EQ(Parse(R"({"train_micro_batch_size_per_gpu": 1, "bfloat16": {"enabled": true}})")
                .compute_dtype(),
            DType::kBFloat16);
  // bf16 is read before the old name.
  EXPECT_EQ(
      Parse(
          R"({"train_micro_batch_size_per_gpu": 1, "bf16": {"enabled": false}, "bfloat16": {"enabled": true}})")
          .compute_dtype(),
      DType::kFloat32);
  const DeepSpeedConfig f = Parse(
      R"({"train_micro_batch_size_per_gpu": 1, "fp16": {"enabled": true, "loss_scale_window": 500}})");
  EXPECT_EQ(f.compute_dtype(), DType::kFloat16);
  EXPECT_EQ(f.fp16.loss_scale_window, 500);
  EXPECT_EQ(f.fp16.initial_scale_power, 16);
  EXPECT_EQ(f.fp16.hysteresis, 2);
  EXPECT_EQ(f.fp16.min_loss_scale, 1);
  EXPECT_EQ(
      ErrorOf(
          R"({"train_micro_batch_size_per_gpu": 1, "bf16": {"enabled": true}, "fp16": {"enabled": true}})")
          .kind(),
      ErrorKind::kConflict);
}

TEST(DeepSpeedPrecision, RunSpecDtypeFillsAndMustAgree) {
  DeepSpeedContext bf = Context();
  bf.dtype = DType::kBFloat16;
  const DeepSpeedConfig filled = Parse(R"({"train_micro_batch_size_per_gpu": 1})", bf);
  EXPECT_TRUE(filled.bf16.enabled);
  EXPECT_EQ(Find(filled, "bf16.enabled")->origin, Origin::kRunSpec);
  EXPECT_TRUE(Parse(R"({"train_micro_batch_size_per_gpu": 1, "bf16": {"enabled": "auto"}})", bf)
                  .bf16.enabled);
  EXPECT_EQ(
      ErrorOf(R"({"train_micro_batch_size_per_gpu": 1, "fp16": {"enabled": true}})", bf).kind(),
      ErrorKind::kConflict);
}

TEST(DeepSpeedPrecision, EngineRules) {
  EXPECT_EQ(
      ErrorOf(
          R"({"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 3}, "fp16": {"enabled": true, "fp16_master_weights_and_grads": true}})")
          .kind(),
      ErrorKind::kConflict);
  EXPECT_TRUE(
      Parse(
          R"({"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 2}, "fp16": {"enabled": true, "fp16_master_weights_and_grads": true}})")
          .fp16.fp16_master_weights_and_grads);
  EXPECT_EQ(
      ErrorOf(
          R"({"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 1}, "amp": {"enabled": true}})")
          .kind(),
      ErrorKind::kConflict);
}

struct BatchCase {
  const char* json;
  std::int64_t world;
  std::int64_t train, micro, gas;
};

TEST(DeepSpeedBatch, InfersTheMissingValueAsDeepSpeedDoes) {
  for (
      const BatchCase& c : {
          BatchCase{
              R"({"train_batch_size": 32, "train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 4})",
              4, 32, 2, 4},
          BatchCase{R"({"train_batch_size": 32, "train_micro_batch_size_per_gpu": 2})", 4, 32, 2,
                    4},
          BatchCase{R"({"train_batch_size": 32, "gradient_accumulation_steps": 4})", 4, 32, 2, 4},
          BatchCase{R"({"train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 4})", 4,
                    32, 2, 4},
          BatchCase{R"({"train_batch_size": 32})", 4, 32, 8, 1},
          BatchCase{R"({"train_micro_batch_size_per_gpu": 2})", 4, 8, 2, 1},
      }) {
    const BatchConfig b = Parse(c.json, Context(c.world)).batch;
    EXPECT_EQ(b.train_batch_size, c.train) << c.json;
    EXPECT_EQ(b.micro_batch_per_gpu, c.micro) << c.json;
    EXPECT_EQ(b.gradient_accumulation_steps, c.gas) << c.json;
  }
}

TEST(DeepSpeedBatch, InconsistentOrMissingValuesAreErrors) {
  // Floor division leaves 10 != 3 * 3 * 1, as in DeepSpeed.
  const UserError e = ErrorOf(R"({"train_batch_size": 10, "train_micro_batch_size_per_gpu": 3})");
  EXPECT_EQ(e.kind(), ErrorKind::kConflict);
  EXPECT_NE(std::string(e.what()).find("10 != 3 * 3 * 1"), std::string::npos) << e.what();
  EXPECT_EQ(ErrorOf(R"({"train_batch_size": 4, "train_micro_batch_size_per_gpu": 8})").kind(),
            ErrorKind::kConflict);
  EXPECT_EQ(
      ErrorOf(
          R"({"train_batch_size": 32, "train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 4})",
          Context(2))
          .kind(),
      ErrorKind::kConflict);
  EXPECT_EQ(ErrorOf(R"({"gradient_accumulation_steps": 4})").kind(), ErrorKind::kMissing);
  EXPECT_EQ(ErrorOf("{}").kind(), ErrorKind::kMissing);
  EXPECT_EQ(ErrorOf(R"({"train_micro_batch_size_per_gpu": 0})").kind(), ErrorKind::kValue);
  EXPECT_EQ(ErrorOf(R"({"train_batch_size": -8})").kind(), ErrorKind::kValue);
  EXPECT_EQ(ErrorOf(R"({"train_batch_size": "8"})").kind(), ErrorKind::kType);
}

TEST(DeepSpeedBatch, RunSpecMicroBatchFillsAndMustAgree) {
  DeepSpeedContext c = Context(2);
  c.micro_batch = 3;
  const DeepSpeedConfig filled = Parse(R"({"gradient_accumulation_steps": 2})", c);
  EXPECT_EQ(filled.batch.train_batch_size, 12);
  EXPECT_EQ(Find(filled, "train_micro_batch_size_per_gpu")->origin, Origin::kRunSpec);
  EXPECT_EQ(Parse(R"({"train_micro_batch_size_per_gpu": "auto"})", c).batch.micro_batch_per_gpu, 3);
  EXPECT_EQ(ErrorOf(R"({"train_micro_batch_size_per_gpu": 4})", c).kind(), ErrorKind::kConflict);
}

TEST(DeepSpeedConfigTopLevel, UnknownKeysWarnWithASuggestion) {
  const DeepSpeedConfig c = Parse(
      R"({"train_micro_batch_size_per_gpu": 1, "zero_optimisation": {"stage": 3}, "gradient_clipping": 1.0})");
  EXPECT_EQ(c.zero.stage, 0);
  EXPECT_TRUE(HasWarning(c, "did you mean 'zero_optimization'"));
  EXPECT_FALSE(HasWarning(c, "gradient_clipping"));
}

TEST(DeepSpeedConfigTopLevel, ElasticTrainingIsNotModelled) {
  EXPECT_EQ(
      ErrorOf(R"({"train_micro_batch_size_per_gpu": 1, "elasticity": {"enabled": true}})").kind(),
      ErrorKind::kUnsupported);
  EXPECT_EQ(Parse(R"({"train_micro_batch_size_per_gpu": 1, "elasticity": {"enabled": false}})")
                .zero.stage,
            0);
}

TEST(DeepSpeedConfigTopLevel, DuplicateKeysAreRejected) {
  try {
    Parse(
        R"({"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 3, "stage": 2}})");
    FAIL();
  } catch (const UserError& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kSyntax);
    EXPECT_EQ(e.where().key_path, "zero_optimization.stage");
  }
}

TEST(DeepSpeedConfigOutput, ResolvedJsonReadsBackToTheSameConfig) {
  const std::string text = R"({"train_batch_size": 16, "gradient_clipping": 1.0,
    "optimizer": {"type": "AdamW", "params": {"lr": 0.001}},
    "zero_optimization": {"stage": 3, "max_live_parameters": 5, "cpu_offload": true,
                          "stage3_gather_fp16_weights_on_model_save": true}})";
  const DeepSpeedConfig first = Parse(text, Context(2));
  const Json out = deepspeed_config_to_json(first);
  EXPECT_EQ(out["gradient_clipping"], 1.0);
  EXPECT_EQ(out["optimizer"]["params"]["lr"], 0.001);
  EXPECT_EQ(out["zero_optimization"]["stage3_max_live_parameters"], 5);
  EXPECT_FALSE(out["zero_optimization"].contains("max_live_parameters"));
  EXPECT_FALSE(out["zero_optimization"].contains("cpu_offload"));
  EXPECT_EQ(out["zero_optimization"]["offload_optimizer"]["device"], "cpu");
  EXPECT_EQ(out["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"], true);
  const DeepSpeedConfig second = Parse(out.dump(), Context(2));
  EXPECT_TRUE(second.warnings.empty()) << second.warnings.front().str();
  ASSERT_EQ(first.provenance.size(), second.provenance.size());
  for (size_t i = 0; i < first.provenance.size(); ++i) {
    EXPECT_EQ(first.provenance[i].key, second.provenance[i].key);
    EXPECT_EQ(first.provenance[i].value, second.provenance[i].value) << first.provenance[i].key;
  }
}

}  // namespace
}  // namespace zp
