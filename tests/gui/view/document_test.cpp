#include "gui/view/document.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/util/atomic_file.h"

namespace zp::gui {
namespace {

namespace fs = std::filesystem;

fs::path golden(const char* name) {
  return fs::path(ZEROPLAN_SOURCE_DIR) / "traces/sim" / name;
}

fs::path temp_file(const std::string& name, const std::string& text) {
  const fs::path dir = fs::temp_directory_path() / "zeroplan_gui_document_test";
  fs::create_directories(dir);
  const fs::path p = dir / name;
  std::ofstream(p, std::ios::binary) << text;
  return p;
}

TEST(Document, LoadsABundledTraceWithItsLanesAndMemory) {
  const Document doc = load_document(golden("gpt2-zero3.trace.json"));
  ASSERT_TRUE(doc.error.empty()) << doc.error;
  ASSERT_TRUE(doc.trace);
  EXPECT_FALSE(doc.report);
  EXPECT_EQ(doc.name, "gpt2-zero3.trace.json");
  EXPECT_FALSE(doc.trace->index.lanes.empty());
  EXPECT_EQ(doc.trace->memory.size(), doc.trace->trace.ranks.size());
}

TEST(Document, ATruncatedTraceIsAMessageNotACrash) {
  const std::string text = read_file(golden("gpt2-zero3.trace.json"));
  const Document doc = load_document(temp_file("cut.trace.json", text.substr(0, text.size() / 2)));
  EXPECT_FALSE(doc.trace);
  EXPECT_NE(doc.error.find("cut.trace.json"), std::string::npos) << doc.error;
}

TEST(Document, ABrokenRuleIsReportedWithItsField) {
  std::string text = read_file(golden("tiny-gpt2-cpu.trace.json"));
  // A version this reader does not know.
  const auto at = text.find("\"version\": ");
  ASSERT_NE(at, std::string::npos);
  text.replace(at, text.find(',', at) - at, "\"version\": 99");
  const Document doc = load_document(temp_file("newer.trace.json", text));
  EXPECT_FALSE(doc.trace);
  EXPECT_NE(doc.error.find("version"), std::string::npos) << doc.error;
}

TEST(Document, AMissingFileIsAMessage) {
  const Document doc = load_document("/nonexistent/zeroplan.trace.json");
  EXPECT_FALSE(doc.trace);
  EXPECT_FALSE(doc.error.empty());
}

// A folder dropped on the window, or named on the command line.
TEST(Document, AFolderIsAMessage) {
  const fs::path dir = fs::temp_directory_path() / "zeroplan_gui_document_test" / "a.trace.json";
  fs::create_directories(dir);
  const Document doc = load_document(dir);
  EXPECT_FALSE(doc.trace);
  EXPECT_FALSE(doc.report);
  EXPECT_NE(doc.error.find("a.trace.json"), std::string::npos) << doc.error;
}

TEST(Document, ATuningReportIsRecognised) {
  const Document doc = load_document(
      temp_file("tune.json",
                R"({"run":"x","pareto":[{"values":{},"peak_memory_bytes":1,"step_time_ns":2}]})"));
  ASSERT_TRUE(doc.error.empty()) << doc.error;
  ASSERT_TRUE(doc.report);
  EXPECT_EQ(doc.report->pareto.size(), 1u);
}

}  // namespace
}  // namespace zp::gui
