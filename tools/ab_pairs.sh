#!/usr/bin/env bash
# A/B of two rnnkit binaries on LM training tokens/s (presets zaremba-small, zaremba-medium, char)
# or batch-1 generation tokens/s (preset generate: bench generate --preset char-shakespeare):
# N pairs per preset, per-pair ratios new / old and their median. EXTRA adds options (e.g.
# --precision bf16).
#
# Two ways to pair:
# - in turn (default): old and new alternate, the order swapped every pair. Host noise that
#   changes over seconds (a neighbour VM, the clock) lands on one side of a pair: on a 2-core
#   KVM guest single pairs swing ±15%.
# - CONCURRENT=1: old and new run at the same time on one thread each, pinned to cores 0 and 1
#   (swapped every pair), so whatever the host does in those seconds hits both. Only one-thread
#   paths are compared this way; the two-thread time loop needs the in-turn mode.
# Usage: OLD=path/to/previous/rnnkit NEW=target/release/rnnkit [N=8] [CONCURRENT=1]
#        [PRESETS="zaremba-small zaremba-medium char"] [PYTHON=python3] tools/ab_pairs.sh
PY=${PYTHON:-python3}
rate() { grep -E '^\s*\{' | tail -n1 | "$PY" -c 'import json,sys; print(round(json.loads(sys.stdin.read())["tokens_per_s"]))'; }
OLD=${OLD:?the previous binary}; NEW=${NEW:-target/release/rnnkit}; N=${N:-8}
if [ -n "$CONCURRENT" ] && [[ " $EXTRA " == *" --threads"* ]]; then
  echo "ab_pairs.sh: CONCURRENT=1 runs one thread each; drop --threads from EXTRA" >&2; exit 2
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for p in ${PRESETS:-zaremba-small zaremba-medium char}; do
  case $p in
    char) a="lm --cell lstm --vocab 65 --embed 512 --hidden 512 --layers 2 --batch-size 64 --bptt 100" ;;
    generate) a="generate --preset char-shakespeare" ;;
    *) a="lm --preset $p" ;;
  esac
  rs=""
  for i in $(seq 1 $N); do
    if [ -n "$CONCURRENT" ]; then
      c=$((i%2))
      taskset -c $c $OLD bench $a $EXTRA --threads 1 --json >"$tmp/o" 2>/dev/null &
      taskset -c $((1-c)) $NEW bench $a $EXTRA --threads 1 --json >"$tmp/n" 2>/dev/null &
      wait
      o=$(rate <"$tmp/o"); n=$(rate <"$tmp/n")
    elif [ $((i%2)) = 1 ]; then o=$($OLD bench $a $EXTRA --json 2>/dev/null | rate); n=$($NEW bench $a $EXTRA --json 2>/dev/null | rate);
    else n=$($NEW bench $a $EXTRA --json 2>/dev/null | rate); o=$($OLD bench $a $EXTRA --json 2>/dev/null | rate); fi
    if [ -z "$o" ] || [ -z "$n" ]; then
      echo "ab_pairs.sh: $p pair $i: $OLD or $NEW printed no tokens_per_s for: bench $a $EXTRA" >&2; exit 2
    fi
    rs="$rs $o:$n"
  done
  mode=${CONCURRENT:+concurrent, 1 thread each}
  echo "$p ${mode:-in turn} $EXTRA:$rs" | $PY -c '
import sys,statistics as s
l=sys.stdin.read().strip(); name,pairs=l.split(":",1)
pr=[tuple(map(int,x.split(":"))) for x in pairs.split()]
r=[n/o for o,n in pr]
print(name, "| old", s.median([o for o,_ in pr]), "new", s.median([n for _,n in pr]), "| ratios", " ".join(f"{x:.2f}" for x in r), "| median ratio %.3f" % s.median(r))'
done
