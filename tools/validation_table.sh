#!/usr/bin/env bash
# The prediction-against-measurement table of docs/validate.md: the bundled CPU examples
# (configs/examples/tiny-gpt2-cpu.yaml, tiny-gpt2-pipeline-cpu.yaml) with three models, on 2 and 4
# ranks, with and without activation checkpointing, ZeRO-3 and pipeline, each run through
# `zeroplan validate --json` with a cluster calibrated on this machine for its rank count.
#
#   tools/validation_table.sh [BUILD_DIR] > table.md      (BUILD_DIR defaults to build)
#
# Progress goes to stderr (with the machine's load before each rank count and the share of its
# CPU time the hypervisor took while calibrating: timings on a shared machine are only as good as
# its quiet); the Markdown table to stdout. With KEEP=DIR, the
# calibrated clusters and each run's JSON are kept in DIR. Needs python3 to format the JSON.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$root/build}"
zeroplan="$build/zeroplan"
steps="${STEPS:-48}"
# Calibration rounds per rank count, each point their median: one calibration is a snapshot of
# half a minute, and on a shared machine a quick or slow spell in it moves every row.
rounds="${ROUNDS:-3}"
if [[ ! -x "$zeroplan" || ! -x "$build/zeroplan-exec" ]]; then
  echo "validation_table.sh: no zeroplan and zeroplan-exec in $build (build both first)" >&2
  exit 2
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/zeroplan-validation.XXXXXX")"
if [[ -n "${KEEP:-}" ]]; then
  mkdir -p "$KEEP"
  trap 'cp "$work"/*.json "$work"/cluster-*.yaml "$KEEP"/ 2>/dev/null; rm -rf "$work"' EXIT
else
  trap 'rm -rf "$work"' EXIT
fi

# The models: the examples' tiny GPT-2, the tiny Llama preset, and a wider, deeper GPT-2.
declare -A models=(
  [tiny-gpt2]="tiny-gpt2"
  [tiny-llama]="tiny-llama"
  [gpt2-4x128]="{preset: tiny-gpt2, hidden_size: 128, num_layers: 4, num_heads: 4}"
)
model_order=(tiny-gpt2 tiny-llama gpt2-4x128)

# variant NAME MODEL RANKS LAYOUT(zero3|pipeline) CHECKPOINT(0|1): writes $work/NAME.yaml.
variant() {
  local name="$1" model="$2" ranks="$3" layout="$4" ckpt="$5" source
  if [[ "$layout" == zero3 ]]; then
    source="$root/configs/examples/tiny-gpt2-cpu.yaml"
  else
    source="$root/configs/examples/tiny-gpt2-pipeline-cpu.yaml"
  fi
  python3 - "$source" "$work/$name.yaml" "$name" "${models[$model]}" "$ranks" "$layout" "$ckpt" <<'EOF'
import sys
source, target, name, model, ranks, layout, ckpt = sys.argv[1:]
text = open(source).read()
def sub(old, new):
    global text
    if old not in text:
        sys.exit(f"validation_table.sh: {source} changed: no '{old.strip()}'")
    text = text.replace(old, new, 1)
import re
text = re.sub(r"(?m)^name: .*$", f"name: {name}", text, count=1)
sub("model: tiny-gpt2", f"model: {model}")
sub("gpus_per_node: 2", f"gpus_per_node: {ranks}")
if ckpt == "1":
    if layout == "zero3":
        sub("  dtype: fp32\n", "  dtype: fp32\n  checkpoint_interval: 1\n")
    else:
        sub("partition: parameters}", "partition: parameters, activation_checkpoint_interval: 1}")
open(target, "w").write(text)
EOF
}

results=()
for ranks in 2 4; do
  echo "validation_table.sh: calibrating $ranks rank(s); load average: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)" >&2
  if ! "$zeroplan" calibrate --nproc "$ranks" --repeat "$rounds" --out "$work/cluster-$ranks.yaml" \
    2>"$work/calibrate-$ranks.err"; then
    cat "$work/calibrate-$ranks.err" >&2
    exit 1
  fi
  # The host's steal time while it was calibrated, to set beside each run's (the table's column).
  steal="$(sed -n "s/^# The host's hypervisor took \([0-9]*%\).*/\1/p" "$work/cluster-$ranks.yaml")"
  echo "validation_table.sh: calibrated $ranks rank(s); host steal ${steal:-not counted}" >&2
  for model in "${model_order[@]}"; do
    for layout in zero3 pipeline; do
      for ckpt in 0 1; do
        name="$model-$layout-$ranks-ckpt$ckpt"
        variant "$name" "$model" "$ranks" "$layout" "$ckpt"
        echo "validation_table.sh: $name" >&2
        status=0
        "$zeroplan" validate "$work/$name.yaml" --nproc "$ranks" --steps "$steps" --json \
          --cluster "$work/cluster-$ranks.yaml" >"$work/$name.json" 2>"$work/$name.err" ||
          status=$?
        if [[ $status -ne 0 && $status -ne 3 ]]; then
          echo "validation_table.sh: $name failed (status $status):" >&2
          cat "$work/$name.err" >&2
          exit 1
        fi
        results+=("$work/$name.json")
      done
    done
  done
done

python3 - "${results[@]}" <<'EOF'
import json, sys

within = busy = 0

def pct(x):
    return f"{100 * x:+.2f}%"

print("| model | ranks | layout | checkpointing | peak (worst rank) | worst category | "
      "collectives (kinds exact) | decisions | step time (calibrated) | "
      "machine speed (before / after) | collective in a step (before / after) | host steal | "
      "within targets |")
print("| --- | ---: | --- | --- | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | --- |")
for path in sys.argv[1:]:
    j = json.load(open(path))
    ranks = j["ranks"]
    peak = max((r["peak_bytes"] for r in ranks), key=lambda f: abs(f["error"]))
    worst_name, worst = None, None
    for r in ranks:
        for name, c in r["categories"].items():
            if worst is None or abs(c["error"]) > abs(worst["error"]):
                worst_name, worst = name, c
    kinds = {}
    for r in ranks:
        for kind, c in r["collectives"].items():
            ok = c["count"]["ok"] and c["bytes"]["ok"]
            kinds[kind] = kinds.get(kind, True) and ok
    exact = sum(kinds.values())
    collectives = f"{exact}/{len(kinds)}" + ("" if exact == len(kinds) else
        " (" + ", ".join(k for k, ok in sorted(kinds.items()) if not ok) + " differ)")
    decided = [r["decisions"] for r in ranks if r["decisions"] is not None]
    if not decided:
        decisions = "none (no gathers)"
    else:
        compared = sum(d["compared"] for d in decided)
        mismatches = sum(d["mismatches"] for d in decided)
        decisions = "identical" if mismatches == 0 else f"{mismatches} of {compared} differ"
        decisions += f" ({compared} ops)" if mismatches == 0 else ""
    step = max((r["step_time_ns"] for r in ranks), key=lambda f: abs(f["error"]))
    layout = "pipeline x2" if j["pipeline"] > 1 else "ZeRO-3"
    ckpt = "every block" if j["checkpoint_interval"] else "none"
    verdict = "yes" if j["within_targets"] else "no: " + ", ".join(
        k for k in ("memory", "collectives", "decisions", "time") if not j["verdicts"][k])
    model = j["run"].rsplit("-", 3)[0]  # the variant's name: MODEL-LAYOUT-RANKS-ckptN
    s = j.get("machine_speed")
    speed = (f"{100 * s['speed_before']:.0f}% / {100 * s['speed_after']:.0f}%" if s else "-")
    c = j.get("collective_speed")
    comm = (f"{100 * c['speed_before']:.0f}% / {100 * c['speed_after']:.0f}%" if c else "-")
    steal = j.get("host_steal_share")
    steal = "-" if steal is None else f"{100 * steal:.0f}%"
    print(f"| {model} | {j['nproc']} | {layout} | "
          f"{ckpt} | {pct(peak['error'])} | {worst_name} {pct(worst['error'])} | {collectives} | "
          f"{decisions} | {pct(step['error'])} | {speed} | {comm} | {steal} | {verdict} |")
    within += j["within_targets"]
    busy += not j.get("host_quiet", True)
print(f"validation_table.sh: {within} of {len(sys.argv) - 1} runs within every target; "
      f"{busy} on a host too busy to judge step time by (steal above 5%)", file=sys.stderr)
EOF
