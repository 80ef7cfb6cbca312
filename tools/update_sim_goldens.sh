#!/usr/bin/env bash
# Rewrites the simulator's golden outputs (traces/sim/) from the bundled examples, after a change
# that is meant to move a prediction. Review the diff before committing it: every changed figure is
# a changed prediction.
#
# usage: tools/update_sim_goldens.sh [EXAMPLE ...]
#   EXAMPLE  a run spec name under configs/examples/ without .yaml (default: every example)
#
# For each example: `zeroplan simulate` with its default options (the steady-state step, the
# caching allocator modelled) writes traces/sim/<example>.json (--json) and
# traces/sim/<example>.trace.json (--trace). tests/sim/golden_test.cpp compares both with a fresh
# simulation.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/build.sh"
zeroplan="${ZEROPLAN_BUILD_DIR:-$root/build}/zeroplan"
mkdir -p "$root/traces/sim"
cd "$root"
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  for f in configs/examples/*.yaml; do names+=("$(basename "$f" .yaml)"); done
fi
for name in "${names[@]}"; do
  spec="configs/examples/$name.yaml"
  [ -f "$spec" ] || { echo "update_sim_goldens: no $spec" >&2; exit 2; }
  "$zeroplan" simulate "$spec" --json --trace "traces/sim/$name.trace.json" \
    > "traces/sim/$name.json.new"
  mv "traces/sim/$name.json.new" "traces/sim/$name.json"
  echo "traces/sim/$name.json, traces/sim/$name.trace.json"
done
