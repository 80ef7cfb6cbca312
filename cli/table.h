// Plain-text tables for terminal reports: left-aligned text, right-aligned numbers.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace zp::cli {

class Table {
 public:
  enum class Align { kLeft, kRight };
  explicit Table(std::vector<std::string> header, std::vector<Align> align = {});
  void add(std::vector<std::string> row);
  void print(std::ostream& out, const std::string& indent = "  ") const;

 private:
  std::vector<std::string> header_;
  std::vector<Align> align_;
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace zp::cli
