#!/bin/sh
# Alternating schedule a, b, c, a, b, c, a, b, c (REPS repetitions). Results: one JSON line per run in $RES.
set -eu
cd "$(dirname "$0")"
export DS_SRC=${DS_SRC:-/tmp/deepspeed-src}
REPS=${REPS:-3}
RES=${RES:-results.jsonl}
for i in $(seq 1 "$REPS"); do
  /usr/bin/python3 time_zero3.py --label "a$i" --times-json "$RES" --config zero3_defaults.json \
      --model-file small_gpt.py --batch 4 --seq 128 --steps 12 --port 29533 --out /tmp/z3_defaults_$i.jsonl | grep MEDIAN
  /usr/bin/python3 time_zero3.py --label "b$i" --times-json "$RES" --config zero3_tight.json \
      --model-file small_gpt.py --batch 4 --seq 128 --steps 12 --port 29535 --out /tmp/z3_tight_$i.jsonl | grep MEDIAN
  /usr/bin/python3 ddp_small_gpt.py --label "c$i" --times-json "$RES" --steps 12 --batch 4 --seq 128 --port 29544 \
      --out /tmp/ddp_small_gpt_$i | grep MEDIAN
done
