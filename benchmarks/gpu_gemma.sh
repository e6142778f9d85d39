#!/usr/bin/env bash
# The real EmbeddingGemma on the lent GPU box, whose calls carry at most 64 MiB: its weights, cast to
# bf16 here (what the pipeline runs on CUDA: the cast is the same either way), travel in parts over
# several calls of one warm machine and are put back together into the Hugging Face cache there,
# checked against the SHA-256 of the bf16 file. Then: the chunk-token reuse on and off (bench),
# packed against padded batches with the real weights, and the question set (eval, kept store).
#
#   OUT=/some/dir bash benchmarks/gpu_gemma.sh PARTS SHA256 BOOKS EVAL_BOOKS [STEPS]
#
# PARTS: a folder of the bf16 model.safetensors split in name order (p00, r00, r01, ...) and
# .tgz files of the snapshot's other files (the Dense layers' weights included); STEPS: any of assemble,reuse,packing,eval (default all).
set -euo pipefail
PARTS=${1:?parts folder}
SHA=${2:?sha256 of the bf16 model.safetensors}
BOOKS=${3:?a folder of EPUBs for the benches}
EVAL_BOOKS=${4:?the books of the question set}
STEPS=${5:-assemble,reuse,packing,eval}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
HUB=$(python3 -c "from huggingface_hub import constants; print(constants.HF_HUB_CACHE)")
SNAP=$HUB/models--google--embeddinggemma-300m/snapshots/57c266a740f537b4dc058e1b0cda161fd15afa75
if [[ $STEPS == *assemble* ]]; then
  mkdir -p "$SNAP" "$(dirname "$(dirname "$SNAP")")/refs"
  printf %s 57c266a740f537b4dc058e1b0cda161fd15afa75 > "$(dirname "$(dirname "$SNAP")")/refs/main"
  cat $(ls "$PARTS"/p* "$PARTS"/r* | sort) > "$SNAP/model.safetensors"
  echo "$SHA  $SNAP/model.safetensors" | sha256sum -c -
  for f in "$PARTS"/*.tgz; do tar xzf "$f" -C "$SNAP"; done
fi
if [[ $STEPS == *reuse* ]]; then
  for r in 1 2; do
    for flag in --token-reuse --no-token-reuse; do
      python3 -m alexandria bench --model embeddinggemma --device cuda --corpus "$BOOKS" \
        --tokens 3000000 --repeats 1 $flag --json "$OUT/reuse$flag-$r.json" 2>&1 | tail -4
    done
  done
fi
if [[ $STEPS == *packing* ]]; then
  python3 benchmarks/packing_check.py --corpus "$BOOKS" --model embeddinggemma \
    --json "$OUT/packing.json" 2>&1 | tail -8
fi
if [[ $STEPS == *eval* ]]; then
  python3 -m alexandria eval tests/eval/questions.jsonl --corpus "$EVAL_BOOKS" --chunker structural \
    --model embeddinggemma --device cuda --store /tmp/eval-base --json "$OUT/eval-base.json" 2>&1 | grep -v "^extracting\|^warning\|: [0-9]*/[0-9]* "
  python3 benchmarks/fusion_grid.py tests/eval/questions.jsonl --corpus "$EVAL_BOOKS" \
    --store /tmp/eval-base/structural --device cuda --json "$OUT/fusion-base.json"
  python3 benchmarks/fusion_grid.py tests/eval/questions.jsonl --corpus "$EVAL_BOOKS" \
    --store /tmp/eval-base/structural --device cuda --prompt "task: question answering | query: " \
    --json "$OUT/fusion-qa.json"
  python3 -m alexandria eval tests/eval/questions.jsonl --corpus "$EVAL_BOOKS" --chunker structural \
    --model embeddinggemma --device cuda --store /tmp/eval-256 --chunk-tokens 256 --overlap 32 \
    --json "$OUT/eval-256.json" 2>&1 | grep -v "^extracting\|^warning\|: [0-9]*/[0-9]* "
fi
