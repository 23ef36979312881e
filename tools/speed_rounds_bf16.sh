#!/usr/bin/env bash
# Interleaved rounds: PyTorch fp32 / bf16 autocast, a previous rnnkit ($OLD) in fp32, this rnnkit ($NEW) in fp32 / bf16 / bf16 on the
# AVX512-BF16 kernel, and ONNX Runtime generation: ../shared/bench/speed_rounds.sh plus the bf16 and A/B columns.
# Usage: OLD=path/to/previous/rnnkit NEW=target/release/rnnkit PYTHON=venv/bin/python tools/speed_rounds_bf16.sh [ROUNDS]
B=$(cd "$(dirname "$0")/../../shared/bench" && pwd); PY=${PYTHON:-python3}; OLD=${OLD:?the previous binary}; NEW=${NEW:-target/release/rnnkit}
rate() { grep -E '^\s*\{' | tail -n1 | "$PY" -c 'import json,sys; print(round(json.loads(sys.stdin.read())["tokens_per_s"]))'; }
lscpu | grep -m1 "Model name"
for round in $(seq 1 "${1:-3}"); do
  for p in zaremba-small zaremba-medium char-lstm-2x512; do
    if [ $p = char-lstm-2x512 ]; then a="--cell lstm --vocab 65 --embed 512 --hidden 512 --layers 2 --batch-size 64 --bptt 100"; else a="--preset $p"; fi
    t=$("$PY" $B/torch_lm_bench.py --only $p --json 2>/dev/null | rate)
    o=$($OLD bench lm $a --json 2>/dev/null | rate)
    n=$($NEW bench lm $a --json 2>/dev/null | rate)
    nb=$($NEW bench lm $a --precision bf16 --json 2>/dev/null | rate)
    nv=$(RNNKIT_BF16_KERNEL=avx512 $NEW bench lm $a --precision bf16 --json 2>/dev/null | rate)
    tb=$("$PY" $B/torch_lm_bench.py --only $p --bf16 --json 2>/dev/null | rate)
    echo "round $round $p: torch-fp32 $t torch-bf16 $tb rnnkit-old-fp32 $o rnnkit-fp32 $n rnnkit-bf16 $nb rnnkit-bf16-avx512 $nv"
  done
  x=$("$PY" $B/ort_generate_bench.py 2>/dev/null | sed -n 's/.*: \([0-9,]*\) tokens\/s.*/\1/p' | tr -d ,)
  o=$($OLD bench generate --preset char-shakespeare --json 2>/dev/null | rate)
  n=$($NEW bench generate --preset char-shakespeare --json 2>/dev/null | rate)
  nb=$($NEW bench generate --preset char-shakespeare --precision bf16 --json 2>/dev/null | rate)
  echo "round $round generate-char-2x512: onnxruntime $x rnnkit-old-fp32 $o rnnkit-fp32 $n rnnkit-bf16 $nb"
done
