#!/usr/bin/env bash
# The Spark engine beside the local engine on one data set (issue 18):
# starts a fresh Spark Connect server (local[2], from PyPI's pyspark in the
# venv .ci/run uses), runs `tiering run --engine spark`, then the local
# engine with a cold store, and prints wall time, this process's peak RSS,
# the Spark driver's peak RSS (VmHWM of the server's JVM) and whether every
# published table is the same bytes. No speed target: this path is for
# scale, not for one 2-core machine.
#
#   benches/spark.sh [DATA_DIR] [--split]
#     DATA_DIR: default benches/data/10000000 (made by benches/run.sh or
#               `tiering generate`)
#     --split:  `[spark] quoted_line_breaks = false`, so Spark splits each
#               CSV file across tasks
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:-benches/data/10000000}"
split="${2:-}"
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
pipeline="$work/pipeline.toml"
{
  echo "as_of = \"2010-12-31\""
  echo "[inputs.transactions]"
  echo "path = \"$abs/transactions.csv\""
  echo "[inputs.customers]"
  echo "path = \"$abs/customers.csv\""
  if [ -f "$abs/interactions.csv" ]; then
    echo "[inputs.interactions]"
    echo "path = \"$abs/interactions.csv\""
  fi
  if [ "$split" = "--split" ]; then
    echo "[spark]"
    echo "quoted_line_breaks = false"
  fi
} >"$pipeline"
args=(run --config "$pipeline")
measure() { # label out extra-args...
  local label="$1" out="$2"
  shift 2
  rm -rf "$out"
  /usr/bin/time -f "%e %M" -o "$work/time" "$bin" "${args[@]}" --out "$out" -q "$@" >/dev/null
  read -r secs kib <"$work/time"
  echo "$label: ${secs} s, tiering peak RSS $((kib / 1024)) MiB"
}
out="$work/out"
measure spark "$out/spark" --engine spark --spark-remote "sc://127.0.0.1:$port" --spark-staging "$work/staging"
echo "spark driver (JVM) peak RSS: $(awk '/VmHWM/ {print int($2 / 1024)}' "/proc/$jvm/status") MiB"
measure local "$out/local"
same=yes
for f in "$out"/local/snapshot=*/*.parquet "$out"/local/snapshot=*/*.csv; do
  cmp -s "$f" "$out/spark/${f#"$out"/local/}" || { same=no; echo "differs: ${f#"$out"/local/}"; }
done
echo "tables identical: $same"
