#include "core/model/model_json.h"

#include <gtest/gtest.h>

#include <filesystem>

namespace zp {
namespace {

ModuleTree Tree() {
  ModuleTree t("net");
  t.set_shape(BatchShape{2, 8, DType::kBFloat16});
  const ModuleId root = t.add_module(kNoModule, "", "Net");
  const ModuleId a = t.add_module(root, "a", "Linear");
  const ModuleId b = t.add_module(root, "b", "Linear");
  const ParamId w = t.add_parameter(a, "weight", {3, 5}, DType::kBFloat16);
  t.add_parameter(a, "bias", {3}, DType::kBFloat16, false);
  t.tie_parameter(b, "weight", w);
  t.set_cost(a, ModuleCost{480, 160, 96});
  t.add_external_parameter(root, w);
  const auto rc = t.add_call(root, kNoCall, false);
  t.add_call(a, rc, true);
  t.add_call(b, rc, true);
  t.add_call(a, rc, true);
  return t;
}

ModuleTree FromText(const std::string& text) {
  const Document d = Document::from_json(text, "m.json");
  return model_from_json(Node(d));
}

UserError ErrorFor(Json j) {
  try {
    FromText(j.dump());
  } catch (const UserError& e) {
    return e;
  }
  ADD_FAILURE() << "accepted " << j.dump();
  return UserError(ErrorKind::kValue, {}, "");
}

TEST(ModelJson, RoundTripIsLossless) {
  const ModuleTree t = Tree();
  const Json j = model_to_json(t);
  EXPECT_EQ(j["format"], "zeroplan.model");
  EXPECT_EQ(j["version"], 1);
  const ModuleTree back = FromText(j.dump());
  EXPECT_EQ(back, t);
  EXPECT_EQ(model_to_json(back), j);
}

TEST(ModelJson, BackwardFlopsAreOptionalAndDefaultToTwiceForward) {
  ModuleTree t = Tree();
  ModuleCost c = t.module(1).cost;
  c.forward_flops = 10;
  EXPECT_EQ(c.backward_or_default(), 20);
  c.backward_flops = 7;
  EXPECT_EQ(c.backward_or_default(), 7);
  t.set_cost(1, c);
  const Json j = model_to_json(t);
  EXPECT_EQ(j["modules"][1]["backward_flops"], 7);
  EXPECT_FALSE(j["modules"][0].contains("backward_flops"));
  EXPECT_EQ(FromText(j.dump()).module(1).cost.backward_flops, 7);
  Json bad = j;
  bad["modules"][1]["backward_flops"] = -1;
  EXPECT_EQ(ErrorFor(bad).where().key_path, "modules[1].backward_flops");
}

TEST(ModelJson, FileRoundTrip) {
  const auto path = std::filesystem::temp_directory_path() / "zeroplan_model_json_test.json";
  save_model_file(Tree(), path);
  EXPECT_EQ(load_model_file(path), Tree());
  std::filesystem::remove(path);
}

TEST(ModelJson, StructuralRulesAreChecked) {
  const Json good = model_to_json(Tree());
  {
    Json j = good;
    j["modules"][0]["children"].push_back(7);
    EXPECT_EQ(ErrorFor(j).where().key_path, "modules[0].children[2]");
  }
  {
    Json j = good;  // module 2 claimed by two parents
    j["modules"][1]["children"].push_back(2);
    EXPECT_NE(std::string(ErrorFor(j).what()).find("already a child"), std::string::npos);
  }
  {
    Json j = good;  // the root as a child
    j["modules"][1]["children"].push_back(0);
    EXPECT_EQ(ErrorFor(j).kind(), ErrorKind::kValue);
  }
  {
    Json j = good;  // a detached cycle: 1 <-> 2
    j["modules"][0]["children"] = Json::array();
    j["modules"][1]["children"] = {2};
    j["modules"][2]["children"] = {1};
    EXPECT_NE(std::string(ErrorFor(j).what()).find("not reachable"), std::string::npos);
  }
  {
    Json j = good;  // parameter registered nowhere
    j["parameters"].push_back({{"name", "x"}, {"shape", {1}}, {"dtype", "fp32"}});
    EXPECT_NE(std::string(ErrorFor(j).what()).find("not registered"), std::string::npos);
  }
  {
    Json j = good;  // a call whose parent comes later
    j["calls"][1]["parent"] = 2;
    EXPECT_EQ(ErrorFor(j).where().key_path, "calls[1].parent");
  }
  {
    Json j = good;
    j["modules"][1]["forward_flops"] = -1;
    EXPECT_NE(std::string(ErrorFor(j).what()).find(">= 0"), std::string::npos);
  }
  {
    Json j = good;
    j["parameters"][0]["dtype"] = "float8";
    EXPECT_EQ(ErrorFor(j).where().key_path, "parameters[0].dtype");
  }
  {
    Json j = good;
    j["modules"][1]["paramz"] = Json::array();
    const UserError e = ErrorFor(j);
    EXPECT_EQ(e.kind(), ErrorKind::kUnknownKey);
    EXPECT_NE(std::string(e.what()).find("did you mean 'params'"), std::string::npos);
  }
  {
    Json j = good;
    j["version"] = 2;
    EXPECT_EQ(ErrorFor(j).kind(), ErrorKind::kUnsupported);
  }
  {
    Json j = good;
    j["format"] = "something-else";
    EXPECT_EQ(ErrorFor(j).kind(), ErrorKind::kValue);
  }
  {
    Json j = good;
    j.erase("batch");
    EXPECT_EQ(ErrorFor(j).kind(), ErrorKind::kMissing);
  }
  {
    Json j = good;
    j["modules"] = Json::array();
    EXPECT_EQ(ErrorFor(j).kind(), ErrorKind::kValue);
  }
}

}  // namespace
}  // namespace zp
