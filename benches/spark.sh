#!/usr/bin/env bash
# The Spark engine beside the local engine on one data set (issue 18):
# starts a fresh Spark Connect server (local[2], from PyPI's pyspark in the
# venv .ci/run uses), runs `tiering run --engine spark`, then the local
# engine with a cold store, and prints wall time, this process's peak RSS,
# the Spark driver's peak RSS (VmHWM of the server's JVM) and whether every
# published table is the same bytes. No speed target: this path is for
# scale, not for one 2-core machine.
#
#   benches/spark.sh [DATA_DIR] [--split | --store]
#     DATA_DIR: default benches/data/10000000 (made by benches/run.sh or
#               `tiering generate`)
#     --split:  `[spark] quoted_line_breaks = false`, so Spark splits each
#               CSV file across tasks
#     --store:  `[spark] store = true` over DATA_DIR/nightly (the history,
#               then 2010-12-31's file, as benches/run.sh's nightly
#               scenario; split from transactions.csv when missing): times
#               the history into the store, the night, and a backfill of 8
#               quarter ends on Spark, then the local engine's full run and
#               backfill, and compares every table
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:-benches/data/10000000}"
mode="${2:-}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tiering-target}"
bin="$CARGO_TARGET_DIR/release/tiering"
cargo build --release --features spark >&2

venv="${TIERING_SPARK_VENV:-$HOME/.cache/tiering-spark-venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c 'import pyspark' 2>/dev/null || "$venv/bin/pip" install --quiet "pyspark==4.3.0"
export JAVA_HOME="${JAVA_HOME:-$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")}"
SPARK_HOME="$("$venv/bin/python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')"
work="$(mktemp -d)"
port=15012
export SPARK_HOME SPARK_LOCAL_IP=127.0.0.1 SPARK_LOG_DIR="$work/logs" SPARK_PID_DIR="$work/pids"
trap '"$SPARK_HOME/sbin/stop-connect-server.sh" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
"$SPARK_HOME/sbin/start-connect-server.sh" --master 'local[2]' \
  --conf spark.driver.host=127.0.0.1 --conf spark.driver.bindAddress=127.0.0.1 \
  --conf spark.connect.grpc.binding.address=127.0.0.1 \
  --conf spark.connect.grpc.binding.port="$port" \
  --conf spark.ui.enabled=false --conf spark.sql.session.timeZone=UTC \
  --conf spark.connect.execute.reattachable.senderMaxStreamDuration=0 \
  --conf spark.connect.execute.reattachable.senderMaxStreamSize=0 \
  --conf spark.local.dir="$work/local" --driver-memory 2g >&2
for _ in $(seq 1 240); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.5
done
jvm="$(cat "$work"/pids/*.pid)"

abs="$(cd "$data" && pwd)"
transactions="$abs/transactions.csv"
if [ "$mode" = "--store" ]; then
  nightly="$abs/nightly"
  night="$nightly/spare/t_2_night.csv"
  if [ ! -f "$night" ]; then
    mkdir -p "$nightly/drops" "$nightly/spare"
    awk -F, -v h="$nightly/drops/t_1_history.csv" -v n="$night" \
      'NR == 1 { print > h; print > n; next } { if (substr($3, 1, 10) == "2010-12-31") print > n; else print > h }' \
      "$abs/transactions.csv"
  fi
  rm -f "$nightly/drops/t_2_night.csv"
  transactions="$nightly/drops/t_*.csv"
fi
pipeline="$work/pipeline.toml"
{
  echo "as_of = \"2010-12-31\""
  echo "[inputs.transactions]"
  echo "path = \"$transactions\""
  echo "[inputs.customers]"
  echo "path = \"$abs/customers.csv\""
  if [ -f "$abs/interactions.csv" ]; then
    echo "[inputs.interactions]"
    echo "path = \"$abs/interactions.csv\""
  fi
  if [ "$mode" = "--split" ]; then
    echo "[spark]"
    echo "quoted_line_breaks = false"
  fi
  if [ "$mode" = "--store" ]; then
    echo "[spark]"
    echo "store = true"
  fi
} >"$pipeline"
args=(run --config "$pipeline")
measure() { # label out extra-args... (the output root is kept: a store run
  # continues the store there)
  local label="$1" out="$2"
  shift 2
  /usr/bin/time -f "%e %M" -o "$work/time" "$bin" "${args[@]}" --out "$out" -q --overwrite "$@" >/dev/null
  read -r secs kib <"$work/time"
  echo "$label: ${secs} s, tiering peak RSS $((kib / 1024)) MiB"
}
same() { # spark-root local-root
  local same=yes f
  for f in "$2"/snapshot=*/*.parquet "$2"/snapshot=*/*.csv; do
    cmp -s "$f" "$1/${f#"$2"/}" || { same=no; echo "differs: ${f#"$2"/}"; }
  done
  echo "tables identical: $same"
}
out="$work/out"
spark=(--engine spark --spark-remote "sc://127.0.0.1:$port" --spark-staging "$work/staging")
if [ "$mode" = "--store" ]; then
  quarters=(--from 2009-03-31 --to 2010-12-31 --every quarter)
  measure "spark: history into the store" "$out/spark" "${spark[@]}"
  cp "$night" "$nightly/drops/t_2_night.csv"
  trap 'rm -f "$nightly/drops/t_2_night.csv"; "$SPARK_HOME/sbin/stop-connect-server.sh" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
  measure "spark: the night" "$out/spark" "${spark[@]}"
  echo "rows read here by the night: $(grep -o '"transaction_rows_read_locally": [0-9]*' "$out/spark/snapshot=2010-12-31/manifest.json")"
  measure "local: full run" "$out/local"
  same "$out/spark" "$out/local"
  # Over the stores the runs above left (nothing to ingest).
  args=(backfill --config "$pipeline" "${quarters[@]}")
  measure "spark: backfill of 8 quarter ends" "$out/spark" "${spark[@]}"
  measure "local: backfill of 8 quarter ends" "$out/local"
  same "$out/spark" "$out/local"
else
  measure spark "$out/spark" "${spark[@]}"
  measure local "$out/local"
  same "$out/spark" "$out/local"
fi
echo "spark driver (JVM) peak RSS: $(awk '/VmHWM/ {print int($2 / 1024)}' "/proc/$jvm/status") MiB"
