// "Did you mean" for unknown keys and names.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace zp {

// Optimal-string-alignment distance (Levenshtein plus adjacent transpositions). O(|a|*|b|).
int edit_distance(std::string_view a, std::string_view b);

// The candidate closest to `word`, if one is close enough to be a likely typo: case, '-' versus '_'
// and a distance of at most max(2, |word|/3) after that. Ties go to the earlier candidate.
std::optional<std::string> closest_match(std::string_view word,
                                         const std::vector<std::string>& candidates);

// " (did you mean 'x'?)" or "" when nothing is close.
std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates);

}  // namespace zp
