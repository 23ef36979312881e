#!/usr/bin/env bash
# A/B of two rnnkit binaries on LM training tokens/s: N alternating pairs per preset (the order
# swapped every pair), per-pair ratios new / old and their median. EXTRA adds options (e.g. --threads 1).
# Usage: OLD=path/to/previous/rnnkit NEW=target/release/rnnkit [N=8] [PRESETS="zaremba-small zaremba-medium char"] tools/ab_pairs.sh
PY=${PYTHON:-python3}
rate() { grep -E '^\s*\{' | tail -n1 | "$PY" -c 'import json,sys; print(round(json.loads(sys.stdin.read())["tokens_per_s"]))'; }
OLD=${OLD:?the previous binary}; NEW=${NEW:-target/release/rnnkit}; N=${N:-8}
for p in ${PRESETS:-zaremba-small zaremba-medium char}; do
  if [ $p = char ]; then a="--cell lstm --vocab 65 --embed 512 --hidden 512 --layers 2 --batch-size 64 --bptt 100"; else a="--preset $p"; fi
  rs=""
  for i in $(seq 1 $N); do
    if [ $((i%2)) = 1 ]; then o=$($OLD bench lm $a $EXTRA --json 2>/dev/null | rate); n=$($NEW bench lm $a $EXTRA --json 2>/dev/null | rate);
    else n=$($NEW bench lm $a $EXTRA --json 2>/dev/null | rate); o=$($OLD bench lm $a $EXTRA --json 2>/dev/null | rate); fi
    rs="$rs $o:$n"
  done
  echo "$p $EXTRA:$rs" | $PY -c '
import sys,statistics as s
l=sys.stdin.read().strip(); name,pairs=l.split(":",1)
pr=[tuple(map(int,x.split(":"))) for x in pairs.split()]
r=[n/o for o,n in pr]
print(name, "old", s.median([o for o,_ in pr]), "new", s.median([n for _,n in pr]), "ratios", " ".join(f"{x:.2f}" for x in r), "median ratio %.3f" % s.median(r))'
done
