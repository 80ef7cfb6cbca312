#!/usr/bin/env bash
# Re-records zeroplan's golden ZeRO-3 traces (traces/deepspeed-v0.14.5/<case>/) with real DeepSpeed
# v0.14.5 on CPU (2 ranks over Gloo, fp32, 3 steps, seed 1234), and re-exports each case's model.json.
#
# usage: tools/record_golden_traces.sh [-o ORACLE_DIR] [-d DS_SRC] [-p PORT] [CASE ...]
#
#   -o ORACLE_DIR  folder holding the oracle's run_zero3.py and ref_check.py      (or $ORACLE_DIR)
#   -d DS_SRC      DeepSpeed v0.14.5 source unpacked by the oracle's install.sh   (or $DS_SRC)
#   -p PORT        rendezvous port for the 2 ranks (default $PORT, else 29561)
#   CASE ...       case folder names under traces/deepspeed-v0.14.5/ (default: every folder there that
#                  holds a ds_config.json)
#   $PYTHON        interpreter with torch 1.13 (default: the first of python3, /usr/bin/python3 that
#                  imports torch; the oracle is made for Debian 12's python3-torch)
#
# For each case: run_zero3.py --config ds_config.json --model-file model.py writes trace.jsonl;
# ref_check.py compares it with plain-PyTorch data-parallel SGD (MATCH expected for every case);
# tools/export_model.py exports the shared traces/deepspeed-v0.14.5/export_adapter.py with
# GOLDEN_CASE=<case folder> (the case's model.py under the exporter's make_batch(batch, seq) contract)
# to model.json; verify_case.py checks that model.json's parameters, modules, ZeRO module ids and
# forward calls equal the trace's. Exits 1 if any step of any case failed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
traces="$root/traces/deepspeed-v0.14.5"
exporter="$here/export_model.py"

oracle=${ORACLE_DIR:-}
ds_src=${DS_SRC:-}
port=${PORT:-29561}
steps=3
world_size=2
seed=1234
batch=2
seq=8

usage() { sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
die() { echo "record_golden_traces: error: $*" >&2; exit 2; }

while getopts "o:d:p:h" opt; do
  case $opt in
    o) oracle=$OPTARG ;;
    d) ds_src=$OPTARG ;;
    p) port=$OPTARG ;;
    h) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))

# --- the oracle and DeepSpeed must be installed --------------------------------------------------
[[ -n "$oracle" ]] || die "no oracle folder: pass -o ORACLE_DIR or set ORACLE_DIR (the folder with run_zero3.py)"
[[ -f "$oracle/run_zero3.py" && -f "$oracle/ref_check.py" ]] ||
  die "oracle not installed: $oracle has no run_zero3.py / ref_check.py"
oracle=$(cd "$oracle" && pwd)
[[ -n "$ds_src" ]] || die "no DeepSpeed source: pass -d DS_SRC or set DS_SRC (install it with:" \
  "cd $oracle && DS_MIRROR=<DeepSpeed git dir> sh install.sh)"
if [[ ! -f "$ds_src/deepspeed/__init__.py" || ! -f "$ds_src/version.txt" ]]; then
  die "DeepSpeed source not installed in $ds_src (no deepspeed/__init__.py or version.txt); install it with:" \
    "cd $oracle && DS_SRC=$ds_src DS_MIRROR=<DeepSpeed git dir> sh install.sh"
fi
ds_src=$(cd "$ds_src" && pwd)
ds_version=$(tr -d '[:space:]' <"$ds_src/version.txt")
[[ "$ds_version" == "0.14.5" ]] || die "$ds_src holds DeepSpeed $ds_version; these traces are for v0.14.5"

python=${PYTHON:-}
if [[ -z "$python" ]]; then
  for candidate in python3 /usr/bin/python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import torch' >/dev/null 2>&1; then
      python=$candidate
      break
    fi
  done
fi
[[ -n "$python" ]] || die "no python3 with torch found (set PYTHON; on Debian 12: apt-get install python3-torch)"
"$python" -c 'import torch' >/dev/null 2>&1 || die "$python cannot import torch"
[[ -f "$exporter" ]] || die "missing $exporter"
adapter="$traces/export_adapter.py"
[[ -f "$adapter" ]] || die "missing $adapter"
[[ -f "$traces/verify_case.py" ]] || die "missing $traces/verify_case.py"

# --- cases -------------------------------------------------------------------------------------------
cases=("$@")
if ((${#cases[@]} == 0)); then
  for d in "$traces"/*/; do
    [[ -f "$d/ds_config.json" ]] && cases+=("$(basename "$d")")
  done
fi
((${#cases[@]})) || die "no cases found under $traces"

echo "oracle: $oracle"
echo "DeepSpeed: $ds_src (version $ds_version)"
echo "python: $python (torch $("$python" -c 'import torch; print(torch.__version__)'))"

# The case model.py files import ../models/*.py: leave no __pycache__ in the source tree.
export PYTHONDONTWRITEBYTECODE=1
failed=()
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for c in "${cases[@]}"; do
  dir="$traces/$c"
  for f in model.py ds_config.json; do
    [[ -f "$dir/$f" ]] || die "case $c: missing $dir/$f"
  done
  echo "== $c"
  out="$tmp/$c"
  mkdir -p "$out"
  if ! DS_SRC="$ds_src" "$python" "$oracle/run_zero3.py" --config "$dir/ds_config.json" \
      --model-file "$dir/model.py" --out "$out/trace.jsonl" --steps "$steps" --world-size "$world_size" \
      --seed "$seed" --port "$port" --ds-src "$ds_src" >"$out/run.log" 2>&1; then
    tail -n 60 "$out/run.log"
    echo "   oracle run FAILED"
    failed+=("$c(run)")
    continue
  fi
  if "$python" "$oracle/ref_check.py" "$out/trace.jsonl" >"$out/ref.log" 2>&1; then
    echo "   ref_check: $(tail -n 1 "$out/ref.log")"
  else
    tail -n 20 "$out/ref.log"
    echo "   ref_check did not MATCH"
    failed+=("$c(ref_check)")
  fi
  # The committed trace names its model file and DeepSpeed source relative to the case, not by
  # where they were on the recording machine.
  "$python" "$traces/verify_case.py" --sanitize "$out/trace.jsonl" "$dir/trace.jsonl"
  chmod 644 "$dir/trace.jsonl"
  if GOLDEN_CASE="$dir" "$python" "$exporter" "$adapter" --out "$dir/model.json" --batch "$batch" --seq "$seq" \
      --name "$c"; then
    chmod 644 "$dir/model.json"
  else
    echo "   export FAILED"
    failed+=("$c(export)")
    continue
  fi
  if ! "$python" "$traces/verify_case.py" "$dir" | sed 's/^/   /'; then
    failed+=("$c(verify)")
  fi
done

if ((${#failed[@]})); then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
echo "all ${#cases[@]} cases recorded, matched by ref_check and verified"
