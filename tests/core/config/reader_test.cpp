#include "core/config/reader.h"

#include <gtest/gtest.h>

namespace zp {
namespace {

Node At(const Document& d, const std::string& key) {
  return Node(d).child(key);
}

TEST(Reader, StrictTypes) {
  const Document d = Document::from_yaml("i: 5\nf: 5e8\nh: 2.5\ns: \"5\"\nb: true\n", "t.yaml");
  EXPECT_EQ(read_int(At(d, "i"), Coercion::kStrict), 5);
  EXPECT_EQ(read_int(At(d, "f"), Coercion::kStrict), 500'000'000);
  EXPECT_THROW(read_int(At(d, "h"), Coercion::kStrict), UserError);
  EXPECT_THROW(read_int(At(d, "s"), Coercion::kStrict), UserError);
  EXPECT_THROW(read_int(At(d, "b"), Coercion::kStrict), UserError);
  EXPECT_THROW(read_bool(At(d, "i"), Coercion::kStrict), UserError);
  EXPECT_EQ(read_double(At(d, "i"), Coercion::kStrict), 5.0);
  EXPECT_THROW(read_string(At(d, "i")), UserError);
}

TEST(Reader, TypeErrorsNameTheValueAndWhere) {
  const Document d = Document::from_yaml("outer:\n  n: hello\n", "t.yaml");
  try {
    read_int(Node(d).child("outer").child("n"), Coercion::kStrict);
    FAIL();
  } catch (const UserError& e) {
    EXPECT_EQ(std::string(e.what()),
              "t.yaml:2:6: outer.n: expected an integer, got a string \"hello\"");
  }
}

TEST(Reader, ObjectReaderReportsUnknownKeysWithSuggestion) {
  const Document d = Document::from_yaml("alpha: 1\nbetta: 2\n", "t.yaml");
  ObjectReader r(Node(d), "the test");
  r.get("alpha");
  r.get("beta");
  try {
    r.reject_unknown();
    FAIL();
  } catch (const UserError& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUnknownKey);
    EXPECT_EQ(e.where().line, 2);
    EXPECT_EQ(e.where().column, 1);
    EXPECT_NE(std::string(e.what()).find("did you mean 'beta'"), std::string::npos);
  }
  std::vector<Warning> warnings;
  r.warn_unknown(warnings, "ignored");
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].str().find("ignored"), std::string::npos);
}

TEST(Reader, AliasesConflict) {
  const Document d = Document::from_yaml("a: 1\nb: 2\n", "t.yaml");
  ObjectReader r(Node(d), "the test");
  EXPECT_THROW(r.get("a", {"b"}), UserError);
}

TEST(Reader, NonMappingIsATypeError) {
  const Document d = Document::from_yaml("[1, 2]\n", "t.yaml");
  EXPECT_THROW(ObjectReader(Node(d), "the run spec"), UserError);
}

}  // namespace
}  // namespace zp
