#include "gui/view/file_list.h"

#include <algorithm>
#include <cctype>
#include <system_error>
#include <utility>

namespace zp::gui {

namespace fs = std::filesystem;

namespace {

bool ends_with(std::string_view text, std::string_view suffix) {
  if (text.size() < suffix.size()) return false;
  const std::string_view tail = text.substr(text.size() - suffix.size());
  return std::equal(tail.begin(), tail.end(), suffix.begin(), [](char a, char b) {
    return std::tolower(static_cast<unsigned char>(a)) == b;
  });
}

// Names as a person reads them: "B" between "a" and "c", then byte order so the order is total.
bool name_before(const std::string& a, const std::string& b) {
  const auto lower = [](char c) { return std::tolower(static_cast<unsigned char>(c)); };
  const bool less = std::lexicographical_compare(
      a.begin(), a.end(), b.begin(), b.end(), [&](char x, char y) { return lower(x) < lower(y); });
  const bool greater = std::lexicographical_compare(
      b.begin(), b.end(), a.begin(), a.end(), [&](char x, char y) { return lower(x) < lower(y); });
  if (less != greater) return less;
  return a < b;
}

std::string message(const fs::path& path, const std::error_code& ec) {
  return path.string() + ": " + ec.message();
}

// What `path` is now, and what the dialog does with it. `typed`: the user named it (not a listed
// entry), so a missing one was never there rather than gone.
DialogChoice choose_path(const fs::path& path, bool typed) {
  DialogChoice c;
  c.path = path;
  std::error_code ec;
  const fs::file_status link = fs::symlink_status(path, ec);
  const fs::file_status target = fs::status(path, ec);
  if (target.type() == fs::file_type::not_found || target.type() == fs::file_type::none) {
    c.action = DialogChoice::Action::kMessage;
    if (ec && ec != std::errc::no_such_file_or_directory) {
      c.message = message(path, ec);  // a folder on the way that cannot be searched
    } else if (fs::is_symlink(link)) {
      std::error_code read_ec;
      const fs::path to = fs::read_symlink(path, read_ec);
      c.message = path.string() + ": a broken link" + (read_ec ? "" : " to " + to.string());
    } else {
      c.message = path.string() + (typed ? ": no such file or folder" : ": no longer exists");
    }
    return c;
  }
  if (fs::is_directory(target)) {
    c.action = DialogChoice::Action::kList;
  } else if (fs::is_regular_file(target)) {
    c.action = DialogChoice::Action::kOpen;
  } else {
    // Reading a FIFO or a device would block the window or never end.
    c.action = DialogChoice::Action::kMessage;
    c.message = path.string() + ": not a regular file";
  }
  return c;
}

}  // namespace

bool looks_openable(std::string_view file_name) {
  return ends_with(file_name, ".json") && !ends_with(file_name, ".chrome.json");
}

fs::path normal_folder(const fs::path& folder) {
  std::error_code ec;
  fs::path p = folder.is_absolute() ? folder : fs::absolute(folder, ec);
  if (ec) p = folder;
  p = p.lexically_normal();
  // "/a/b/" has an empty file name, and its parent_path() is "/a/b": the dialog would never go up.
  if (!p.has_filename() && p != p.root_path()) p = p.parent_path();
  return p;
}

fs::path parent_folder(const fs::path& folder) {
  const fs::path p = normal_folder(folder);
  return p.has_relative_path() ? p.parent_path() : p;
}

FolderListing list_folder(const fs::path& folder, const ListOptions& options) {
  FolderListing out;
  out.folder = normal_folder(folder);
  if (out.folder.empty()) {
    // The working folder, when it was removed from under the viewer.
    out.error = "no folder to list: type a path";
    return out;
  }
  if (out.folder.has_relative_path()) {
    out.entries.push_back({FileEntry::Kind::kParent, "..", parent_folder(out.folder)});
  }
  std::vector<FileEntry> folders, files;
  std::error_code ec;
  fs::directory_iterator it(out.folder, ec);
  if (ec) {
    out.error = message(out.folder, ec);
    return out;
  }
  for (const fs::directory_iterator end; it != end; it.increment(ec)) {
    const fs::directory_entry& e = *it;
    const std::string name = e.path().filename().string();
    if (!options.all_files && !name.empty() && name.front() == '.') continue;
    std::error_code status_ec;
    const fs::file_status target = e.status(status_ec);
    if (fs::is_directory(target)) {
      folders.push_back({FileEntry::Kind::kFolder, name + "/", e.path()});
      continue;
    }
    if (!options.all_files && !looks_openable(name)) continue;
    std::error_code link_ec;
    const bool broken = target.type() == fs::file_type::not_found && e.is_symlink(link_ec);
    if (broken) {
      files.push_back({FileEntry::Kind::kBrokenLink, name + " (broken link)", e.path()});
    } else {
      files.push_back({FileEntry::Kind::kFile, name, e.path()});
    }
  }
  // A failure part way through keeps what was read.
  if (ec) out.error = message(out.folder, ec);
  const auto by_name = [](const FileEntry& a, const FileEntry& b) {
    return name_before(a.path.filename().string(), b.path.filename().string());
  };
  std::sort(folders.begin(), folders.end(), by_name);
  std::sort(files.begin(), files.end(), by_name);
  for (auto* group : {&folders, &files}) {
    for (FileEntry& e : *group)
      out.entries.push_back(std::move(e));
  }
  return out;
}

DialogChoice choose_entry(const FileEntry& entry) {
  return choose_path(entry.path, /*typed=*/false);
}

DialogChoice choose_typed_path(const fs::path& folder, std::string_view text,
                               const fs::path& home) {
  // Surrounding blanks are a paste's, not the file's.
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front())))
    text.remove_prefix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back())))
    text.remove_suffix(1);
  if (text.empty()) return {};
  fs::path p;
  if (!home.empty() && text == "~") {
    p = home;
  } else if (!home.empty() && text.substr(0, 2) == "~/") {
    p = home / fs::path(std::string(text.substr(2)));
  } else {
    p = fs::path(std::string(text));
    if (p.is_relative()) p = normal_folder(folder) / p;
  }
  p = p.lexically_normal();
  DialogChoice c = choose_path(p, /*typed=*/true);
  if (c.action == DialogChoice::Action::kList) c.path = normal_folder(p);
  return c;
}

}  // namespace zp::gui
