#include "core/config/document.h"

#include <gtest/gtest.h>

namespace zp {
namespace {

TEST(Document, YamlScalarsFollowTheCoreSchema) {
  const Document d = Document::from_yaml(
      "a: 5\nb: 5e8\nc: \"5\"\nd: true\ne: True\nf: yes\ng: ~\nh:\ni: 1_000\nj: -3\nk: 0.5\nl: "
      "'x'\nm: .inf\n",
      "t.yaml");
  const Json& r = d.root();
  EXPECT_TRUE(r["a"].is_number_integer());
  EXPECT_EQ(r["a"], 5);
  EXPECT_TRUE(r["b"].is_number_float());
  EXPECT_EQ(r["b"], 5e8);
  EXPECT_EQ(r["c"], "5");  // quoted: a string
  EXPECT_EQ(r["d"], true);
  EXPECT_EQ(r["e"], true);
  EXPECT_EQ(r["f"], "yes");  // YAML 1.2: not a boolean
  EXPECT_TRUE(r["g"].is_null());
  EXPECT_TRUE(r["h"].is_null());
  EXPECT_EQ(r["i"], "1_000");
  EXPECT_EQ(r["j"], -3);
  EXPECT_EQ(r["k"], 0.5);
  EXPECT_EQ(r["l"], "x");
  EXPECT_TRUE(std::isinf(r["m"].get<double>()));
}

TEST(Document, YamlPositionsOfValuesAndKeys) {
  const Document d = Document::from_yaml("top:\n  inner:\n    key: 42\n  list: [1, 2]\n", "t.yaml");
  const Node key = Node(d).child("top").child("inner").child("key");
  EXPECT_EQ(key.path(), "top.inner.key");
  EXPECT_EQ(key.location().line, 3);
  EXPECT_EQ(key.location().column, 10);
  EXPECT_EQ(key.key_location().column, 5);
  EXPECT_EQ(key.location().str(), "t.yaml:3:10: top.inner.key");
  const Node second = Node(d).child("top").child("list").element(1);
  EXPECT_EQ(second.path(), "top.list[1]");
  EXPECT_EQ(second.location().line, 4);
}

TEST(Document, DisplayPrefix) {
  const Document d = Document::from_json(R"({"a": {"b": 1}})", "ds.json");
  EXPECT_EQ(Node(d, "deepspeed").child("a").child("b").path(), "deepspeed.a.b");
}

TEST(Document, YamlSyntaxErrorHasLineAndColumn) {
  try {
    Document::from_yaml("a: 1\nb: [1, 2\nc: 3\n", "bad.yaml");
    FAIL();
  } catch (const UserError& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kSyntax);
    EXPECT_EQ(e.where().file, "bad.yaml");
    EXPECT_GT(e.where().line, 1);
    EXPECT_NE(std::string(e.what()).find("invalid YAML"), std::string::npos);
  }
}

TEST(Document, JsonSyntaxErrorHasLineAndColumn) {
  try {
    Document::from_json("{\n  \"a\": 1,\n  \"b\": ]\n}", "bad.json");
    FAIL();
  } catch (const UserError& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kSyntax);
    EXPECT_EQ(e.where().line, 3);
    EXPECT_EQ(e.where().column, 8);
    EXPECT_EQ(std::string(e.what()).find("[json.exception"), std::string::npos) << e.what();
  }
}

TEST(Document, DuplicateKeysAreErrors) {
  EXPECT_THROW(Document::from_yaml("a: 1\na: 2\n", "d.yaml"), UserError);
  try {
    Document::from_json(R"({"x": [{"k": 1}, {"k": 2, "k": 3}]})", "d.json");
    FAIL();
  } catch (const UserError& e) {
    EXPECT_EQ(e.where().key_path, "x[1].k");
  }
}

TEST(Document, MissingFile) {
  try {
    Document::load("/nonexistent/zeroplan/run.yaml");
    FAIL();
  } catch (const UserError& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kMissing);
    EXPECT_NE(std::string(e.what()).find("/nonexistent/zeroplan/run.yaml"), std::string::npos);
  }
}

}  // namespace
}  // namespace zp
