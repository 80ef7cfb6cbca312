// Where each resolved setting came from, so that `zeroplan inspect` can show it.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/config/document.h"

namespace zp {

enum class Origin {
  kUser,        // written by the user under this key (or one of its spellings)
  kDefault,     // not written; the default applies
  kDeprecated,  // set through a deprecated key, as DeepSpeed maps it
  kInferred,    // derived from other settings (the batch triple, overlap_comm)
  kRunSpec,     // taken from the run spec (training shape, parallel degrees)
};

std::string_view to_string(Origin origin);

struct ResolvedSetting {
  std::string key;  // dotted path in DeepSpeed's canonical spelling
  Json value;
  Origin origin = Origin::kDefault;
  std::string note;  // "written as max_live_parameters", "from cpu_offload: true", ...
};

using Provenance = std::vector<ResolvedSetting>;

}  // namespace zp
