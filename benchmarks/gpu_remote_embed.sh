#!/usr/bin/env bash
# Issue 21 on the GPU box: two infinity servers (random-weight bge-m3 of the exact architecture,
# fp16, one GPU), `alexandria tune --embed-url` on them, then `alexandria bench --embed-url` over
# one and two. Wheels travel in .whl (Alexandria's missing dependencies) and .whl-infinity
# (infinity-emb with the sentence-transformers 3 / transformers 4 it pins, kept in its own folder so
# that Alexandria keeps the image's newer ones). docs/performance.md has the command and numbers.
#
#   OUT=/some/dir bash benchmarks/gpu_remote_embed.sh BOOKS [TOKENS] [REPEATS]
#
# BOOKS as in docs/performance.md's latest tables: the corpus's 11 smallest books,
#   mkdir -p .bench/small && cp $(ls -S ../shared/corpus/epubs/books/*.epub | tail -11) .bench/small/
#
# COMPARE="name:VAR=value[,VAR=value] ..." runs the bench again after the first, with the same servers
# and settings, once per entry with those variables set (ALEXANDRIA_INDEX_EVERY=0 to leave a
# setting out; CODE=DIR to time the alexandria package of another checkout, DIR/alexandria;
# ARGS=--option=value for one more bench option, such as ARGS=--workers=4); each writes
# remote-NAME.json. They run from /tmp, so that `-m alexandria` is the one PYTHONPATH names.
#
# QDRANT_URL=local:/tmp/qdrant (or a server's URL) writes the runs there instead of a fresh
# embedded store (bench --qdrant-url; .whl-qc carries qdrant-client and its grpcio, protobuf and
# portalocker, and pydantic comes from .whl-infinity). A second call on the same machine reuses the
# model and the tuning of the first.
#
# .whl, made where PyPI is reachable (the box's Python is 3.12):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 -d .whl ebooklib \
#     beautifulsoup4 soupsieve 'qdrant-edge-py>=0.9,<0.10' semantic-text-splitter python-dotenv \
#     pypdfium2 orjson pybase64
# .whl-infinity, likewise (its image already has
# torch, numpy, typer, rich, pillow and uvloop):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 -d .whl-infinity \
#     infinity-emb==0.0.78 transformers==4.57.6 sentence-transformers==3.4.1 tokenizers==0.22.1 \
#     huggingface-hub==0.36.0 fastapi starlette uvicorn==0.32.1 httptools orjson pydantic \
#     pydantic-core annotated-types typing-inspection prometheus-fastapi-instrumentator \
#     opentelemetry-api posthog backoff distro
set -euo pipefail
BOOKS=$(realpath "${1:?a folder of EPUBs}")
TOKENS=${2:-2000000}
REPEATS=${3:-2}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
QC=$(ls .whl-qc/*.whl 2>/dev/null || true)
[ -z "$QC" ] || QC="$QC $(ls .whl-infinity/pydantic*.whl .whl-infinity/annotated_types*.whl \
  .whl-infinity/typing_inspection*.whl)"
python3 -m pip install -q --upgrade --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl $QC
[ -d /tmp/inf ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/inf .whl-infinity/*.whl
export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1
[ -d /tmp/bge-st3 ] || python3 - "$BOOKS" <<'PY'
import sys
from pathlib import Path
from alexandria.tools.bench.corpus import corpus_books, corpus_texts
from alexandria.tools.bench.synthetic import build_synthetic_model
sys.path.insert(0, "benchmarks")
from st3_folder import convert
books = corpus_books(Path(sys.argv[1]))
build_synthetic_model("bge-m3", corpus_texts(books), Path("/tmp/bge"), "cuda", print)
convert(Path("/tmp/bge"), Path("/tmp/bge-st3"))
PY
pids=()
for port in 7997 7998; do
  PYTHONPATH=/tmp/inf INFINITY_BETTERTRANSFORMER=false INFINITY_MODEL_WARMUP=false \
    INFINITY_ANONYMOUS_USAGE_STATS=0 DO_NOT_TRACK=1 \
    python3 /tmp/inf/bin/infinity_emb v2 --model-id /tmp/bge-st3 --engine torch --device cuda \
    --dtype float16 --batch-size 64 --host 127.0.0.1 --port $port > "$OUT/infinity-$port.log" 2>&1 &
  pids+=($!)
done
trap 'kill ${pids[@]} 2>/dev/null || true' EXIT
for i in 0 1; do
  port=$((7997 + i))
  for _ in $(seq 180); do
    curl -sf -X POST "http://127.0.0.1:$port/embeddings" -H 'content-type: application/json' \
      -d '{"input":["ready?"],"model":"x"}' >/dev/null && break
    kill -0 "${pids[$i]}" 2>/dev/null || { tail -20 "$OUT/infinity-$port.log"; exit 1; }
    sleep 1
  done
done
URLS=http://127.0.0.1:7997/embeddings,http://127.0.0.1:7998/embeddings
[ -s /tmp/tune.json ] || python3 -m alexandria tune --embed-url "$URLS" --model /tmp/bge \
  --directory "$BOOKS" --sample-tokens 200000 --env-file /tmp/tune.env --json > /tmp/tune.json
cp /tmp/tune.json "$OUT/tune.json"
TUNED=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['embed_url'])" "$OUT/tune.json")
echo "tuned: $TUNED"
python3 -m alexandria bench --embed-url "$TUNED" --model /tmp/bge --corpus "$BOOKS" \
  --tokens "$TOKENS" --repeats "$REPEATS" --workdir /tmp/bench-remote --json "$OUT/remote.json" \
  ${QDRANT_URL:+--qdrant-url "$QDRANT_URL"}
ROOT=$PWD
for entry in ${COMPARE:-}; do
  name=${entry%%:*}
  vars=$(echo "${entry#*:}" | tr ',' ' ')
  code=$(echo "$vars" | tr ' ' '\n' | sed -n 's/^CODE=//p')
  code=$(realpath "${code:-$ROOT}")
  args=$(echo "$vars" | tr ' ' '\n' | sed -n 's/^ARGS=//p')
  # shellcheck disable=SC2046,SC2086  # the entry's assignments
  (cd /tmp && env PYTHONPATH="/tmp/site:$code" $vars python3 -m alexandria bench \
    --embed-url "$TUNED" --model /tmp/bge --corpus "$BOOKS" --tokens "$TOKENS" \
    --repeats "$REPEATS" --workdir "/tmp/bench-$name" --json "$OUT/remote-$name.json" \
    ${QDRANT_URL:+--qdrant-url "$QDRANT_URL"} $args)
  for d in /tmp/bench-"$name"/run-*; do
    cp "$d/report.json" "$OUT/report-$name-${d##*/}.json" 2>/dev/null || true
  done
done
nvidia-smi --query-gpu=name,memory.used --format=csv >> "$OUT/gpu.txt"
# Each n's last run: its log (every concurrency change is named there) and its report.
for d in /tmp/bench-remote/run-*; do
  cp -r "$d/logs" "$OUT/logs-${d##*/}" 2>/dev/null || true
  cp "$d/report.json" "$OUT/report-${d##*/}.json" 2>/dev/null || true
done
