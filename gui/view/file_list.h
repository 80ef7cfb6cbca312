// The viewer's file dialog without ImGui: what a folder lists, and what choosing an entry or typing
// a path leads to. Nothing here throws for a folder or file that cannot be read, or that went away
// since it was listed: that becomes a message for the dialog to show.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace zp::gui {

struct FileEntry {
  enum class Kind : std::uint8_t { kParent, kFolder, kFile, kBrokenLink };
  Kind kind = Kind::kFile;
  std::string label;  // as listed: "..", "name/", "name", "name (broken link)"
  std::filesystem::path path;
};

struct FolderListing {
  std::filesystem::path folder;  // absolute, without "." or ".." or a trailing separator
  // ".." first (none at a root), then the folders, then the files, each group by name.
  std::vector<FileEntry> entries;
  std::string error;  // why the folder, or part of it, could not be read; empty when it could
};

struct ListOptions {
  // Also hidden entries (".name") and files that do not look like something the viewer opens.
  bool all_files = false;
};

// Whether a file of this name is offered: the viewer reads native traces and tuning reports, which
// are JSON; Chrome traces are JSON too but not readable here.
bool looks_openable(std::string_view file_name);

// `folder` made absolute and normal ("a/b/../c/" is "<cwd>/a/c"), as a listing names it.
std::filesystem::path normal_folder(const std::filesystem::path& folder);
// The folder above `folder` (itself at a root).
std::filesystem::path parent_folder(const std::filesystem::path& folder);

FolderListing list_folder(const std::filesystem::path& folder, const ListOptions& options = {});

// What the dialog does next.
struct DialogChoice {
  enum class Action : std::uint8_t {
    kNone,     // nothing (an empty path)
    kList,     // list the folder `path`
    kOpen,     // open the file `path`; a file that is not a trace becomes a message in the window
    kMessage,  // show `message` and list the folder again
  };
  Action action = Action::kNone;
  std::filesystem::path path;
  std::string message;
};

// Choosing a listed entry, as the file system is now: it may have changed since the listing.
DialogChoice choose_entry(const FileEntry& entry);
// The path typed in the dialog: relative to `folder` unless absolute; "~" starts at `home` (the
// user's home folder; empty where unknown).
DialogChoice choose_typed_path(const std::filesystem::path& folder, std::string_view text,
                               const std::filesystem::path& home = {});

}  // namespace zp::gui
