#include "gui/view/file_list.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gui/view/document.h"

namespace zp::gui {
namespace {

namespace fs = std::filesystem;
using Action = DialogChoice::Action;
using Kind = FileEntry::Kind;

// A fresh folder per test, removed afterwards (permissions restored first).
class FileList : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    root_ = fs::temp_directory_path() /
            ("zeroplan_file_list_test." + std::to_string(::getpid()) + "." + info->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override {
    std::error_code ec;
    for (const fs::path& p : locked_)
      fs::permissions(p, fs::perms::owner_all, ec);
    fs::remove_all(root_, ec);
  }
  fs::path file(const std::string& name, const std::string& text = "{}") {
    const fs::path p = root_ / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << text;
    return p;
  }
  fs::path folder(const std::string& name) {
    fs::create_directories(root_ / name);
    return root_ / name;
  }
  // A folder nobody may read; false where this process reads it anyway (root).
  bool lock(const fs::path& p) {
    fs::permissions(p, fs::perms::none);
    locked_.push_back(p);
    std::error_code ec;
    fs::directory_iterator it(p, ec);
    return static_cast<bool>(ec);
  }

  fs::path root_;
  std::vector<fs::path> locked_;
};

std::vector<std::string> Labels(const FolderListing& l) {
  std::vector<std::string> out;
  for (const FileEntry& e : l.entries)
    out.push_back(e.label);
  return out;
}

TEST(FileListNames, OffersJsonButNotChromeTraces) {
  EXPECT_TRUE(looks_openable("gpt2-zero3.trace.json"));
  EXPECT_TRUE(looks_openable("tune.json"));
  EXPECT_TRUE(looks_openable("RUN.JSON"));
  EXPECT_FALSE(looks_openable("t.chrome.json"));
  EXPECT_FALSE(looks_openable("run.yaml"));
  EXPECT_FALSE(looks_openable("json"));
  EXPECT_FALSE(looks_openable("notes.json.txt"));
}

TEST(FileListNames, FoldersAreAbsoluteAndNormal) {
  EXPECT_EQ(normal_folder("/a/b/../c/"), fs::path("/a/c"));
  EXPECT_EQ(normal_folder("/a/./b"), fs::path("/a/b"));
  EXPECT_EQ(normal_folder("/"), fs::path("/"));
  EXPECT_EQ(normal_folder("x"), (fs::current_path() / "x").lexically_normal());
  // Up from a path written with a trailing separator goes up, not to the same folder.
  EXPECT_EQ(parent_folder("/a/b/"), fs::path("/a"));
  EXPECT_EQ(parent_folder("/a"), fs::path("/"));
  EXPECT_EQ(parent_folder("/"), fs::path("/"));
}

TEST_F(FileList, ParentThenFoldersThenTracesEachByName) {
  folder("zeta");
  folder("Alpha");
  folder(".git");
  file("b.trace.json");
  file("A.json");
  file("c.chrome.json");
  file("run.yaml");
  file(".hidden.json");
  const FolderListing l = list_folder(root_);
  EXPECT_TRUE(l.error.empty()) << l.error;
  EXPECT_EQ(l.folder, root_);
  EXPECT_EQ(Labels(l),
            (std::vector<std::string>{"..", "Alpha/", "zeta/", "A.json", "b.trace.json"}));
  EXPECT_EQ(l.entries[0].kind, Kind::kParent);
  EXPECT_EQ(l.entries[0].path, root_.parent_path());
  EXPECT_EQ(l.entries[1].kind, Kind::kFolder);
  EXPECT_EQ(l.entries[1].path, root_ / "Alpha");
  EXPECT_EQ(l.entries[4].kind, Kind::kFile);
  EXPECT_EQ(l.entries[4].path, root_ / "b.trace.json");

  ListOptions all;
  all.all_files = true;
  EXPECT_EQ(Labels(list_folder(root_, all)),
            (std::vector<std::string>{"..", ".git/", "Alpha/", "zeta/", ".hidden.json", "A.json",
                                      "b.trace.json", "c.chrome.json", "run.yaml"}));
}

TEST_F(FileList, ARootHasNoParentEntry) {
  const FolderListing l = list_folder("/");
  ASSERT_FALSE(l.entries.empty());
  EXPECT_NE(l.entries.front().kind, Kind::kParent);
  EXPECT_EQ(l.folder, fs::path("/"));
}

TEST_F(FileList, ARelativeFolderIsListedAbsoluteSoUpWorks) {
  folder("sub/inner");
  const fs::path previous = fs::current_path();
  fs::current_path(root_);
  const FolderListing l = list_folder("sub/");
  fs::current_path(previous);
  EXPECT_EQ(l.folder, root_ / "sub");
  EXPECT_EQ(l.entries.front().path, root_);
  EXPECT_EQ(Labels(l), (std::vector<std::string>{"..", "inner/"}));
}

TEST_F(FileList, AFolderThatCannotBeReadIsAMessageWithTheWayUp) {
  const fs::path missing = root_ / "gone";
  FolderListing l = list_folder(missing);
  EXPECT_NE(l.error.find(missing.string()), std::string::npos) << l.error;
  EXPECT_EQ(Labels(l), (std::vector<std::string>{".."}));
  // A file is not a folder.
  l = list_folder(file("t.json"));
  EXPECT_FALSE(l.error.empty());
  EXPECT_EQ(Labels(l), (std::vector<std::string>{".."}));

  const fs::path locked = folder("locked");
  file("locked/a.trace.json");
  const auto listed_as_unreadable = [&] {
    const FolderListing u = list_folder(locked);
    return u.error.find("locked") != std::string::npos &&
           Labels(u) == std::vector<std::string>{".."} && u.entries.front().path == root_;
  };
  if (lock(locked)) {
    EXPECT_TRUE(listed_as_unreadable());
    return;
  }
  // Root reads any folder: the listing is tried as nobody, in a child process.
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(2);
    ::_exit(listed_as_unreadable() ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 2) GTEST_SKIP() << "cannot give up root to list the folder";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the unreadable folder was not listed as a message";
}

TEST_F(FileList, ABrokenLinkIsListedAsSuchAndChoosingItIsAMessage) {
  file("real.trace.json");
  fs::create_symlink(root_ / "nowhere.trace.json", root_ / "broken.trace.json");
  fs::create_symlink(root_ / "real.trace.json", root_ / "link.trace.json");
  fs::create_directory_symlink(folder("target"), root_ / "dirlink");
  const FolderListing l = list_folder(root_);
  EXPECT_TRUE(l.error.empty()) << l.error;
  EXPECT_EQ(Labels(l), (std::vector<std::string>{"..", "dirlink/", "target/",
                                                 "broken.trace.json (broken link)",
                                                 "link.trace.json", "real.trace.json"}));
  EXPECT_EQ(l.entries[3].kind, Kind::kBrokenLink);
  const DialogChoice c = choose_entry(l.entries[3]);
  EXPECT_EQ(c.action, Action::kMessage);
  EXPECT_NE(c.message.find("broken link"), std::string::npos) << c.message;
  EXPECT_NE(c.message.find("nowhere.trace.json"), std::string::npos) << c.message;
  // A link to a folder is a folder; to a file, a file.
  EXPECT_EQ(choose_entry(l.entries[1]).action, Action::kList);
  EXPECT_EQ(choose_entry(l.entries[4]).action, Action::kOpen);
}

TEST_F(FileList, ChoosingAnEntryTakesTheFileSystemAsItIsNow) {
  const fs::path t = file("a.trace.json");
  folder("sub");
  const FolderListing l = list_folder(root_);
  ASSERT_EQ(Labels(l), (std::vector<std::string>{"..", "sub/", "a.trace.json"}));
  DialogChoice c = choose_entry(l.entries[2]);
  EXPECT_EQ(c.action, Action::kOpen);
  EXPECT_EQ(c.path, t);
  c = choose_entry(l.entries[1]);
  EXPECT_EQ(c.action, Action::kList);
  EXPECT_EQ(c.path, root_ / "sub");
  c = choose_entry(l.entries[0]);
  EXPECT_EQ(c.action, Action::kList);
  EXPECT_EQ(c.path, root_.parent_path());
  // Removed since the listing: a message, not an open that fails or a crash.
  fs::remove(t);
  fs::remove(root_ / "sub");
  c = choose_entry(l.entries[2]);
  EXPECT_EQ(c.action, Action::kMessage);
  EXPECT_NE(c.message.find("no longer exists"), std::string::npos) << c.message;
  EXPECT_EQ(choose_entry(l.entries[1]).action, Action::kMessage);
}

TEST_F(FileList, AFifoIsNotOpenedItWouldBlockTheWindow) {
  const fs::path fifo = root_ / "pipe.json";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const FolderListing l = list_folder(root_);
  ASSERT_EQ(Labels(l), (std::vector<std::string>{"..", "pipe.json"}));
  const DialogChoice c = choose_entry(l.entries[1]);
  EXPECT_EQ(c.action, Action::kMessage);
  EXPECT_NE(c.message.find("not a regular file"), std::string::npos) << c.message;
}

TEST_F(FileList, ATypedPathIsRelativeToTheListedFolder) {
  folder("sub");
  const fs::path t = file("sub/x.trace.json");
  DialogChoice c = choose_typed_path(root_, "sub/x.trace.json");
  EXPECT_EQ(c.action, Action::kOpen);
  EXPECT_EQ(c.path, t);
  c = choose_typed_path(root_ / "sub", "  ../sub/  ");  // a paste's blanks
  EXPECT_EQ(c.action, Action::kList);
  EXPECT_EQ(c.path, root_ / "sub");
  c = choose_typed_path(root_ / "sub", t.string());
  EXPECT_EQ(c.action, Action::kOpen);
  EXPECT_EQ(c.path, t);
  c = choose_typed_path(root_, "~/x.trace.json", root_ / "sub");
  EXPECT_EQ(c.action, Action::kOpen);
  EXPECT_EQ(c.path, t);
  c = choose_typed_path(root_, "~", root_ / "sub");
  EXPECT_EQ(c.action, Action::kList);
  EXPECT_EQ(c.path, root_ / "sub");
  EXPECT_EQ(choose_typed_path(root_, "   ").action, Action::kNone);
  c = choose_typed_path(root_, "nothing.json");
  EXPECT_EQ(c.action, Action::kMessage);
  EXPECT_NE(c.message.find("no such file or folder"), std::string::npos) << c.message;
}

// What the dialog then does with a chosen file: load it, and a broken one is a message in the
// window (the document's error), never an exception.
TEST_F(FileList, AChosenBrokenFileLoadsAsItsMessage) {
  const std::vector<std::pair<std::string, std::string>> broken = {
      {"empty.json", ""},
      {"cut.trace.json", R"({"format": "zeroplan-trace", "version": 3, "strings": [)"},
      {"binary.json", std::string("\0\xff\xfe{", 4)},
      {"array.json", "[1, 2, 3]"},
      {"cut-tune.json", R"({"run": "x", "pareto": [{"values": )"},
  };
  for (const auto& [name, text] : broken) {
    SCOPED_TRACE(name);
    file(name, text);
  }
  const FolderListing l = list_folder(root_);
  ASSERT_EQ(l.entries.size(), broken.size() + 1);
  for (const FileEntry& e : l.entries) {
    if (e.kind == Kind::kParent) continue;
    SCOPED_TRACE(e.label);
    const DialogChoice c = choose_entry(e);
    ASSERT_EQ(c.action, Action::kOpen);
    const Document doc = load_document(c.path);
    EXPECT_FALSE(doc.trace);
    EXPECT_FALSE(doc.report);
    EXPECT_NE(doc.error.find(e.path.filename().string()), std::string::npos) << doc.error;
  }
}

}  // namespace
}  // namespace zp::gui
