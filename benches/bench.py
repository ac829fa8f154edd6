"""Benchmark harness (see run.sh): generates or reuses data, runs tiering and
the peers alternately, checks their key outputs agree, reports medians."""
import argparse, datetime, json, os, platform, shutil, statistics, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
AS_OF = "2010-12-31"

def timed(cmd, env=None):
    """Runs cmd under /usr/bin/time; returns (seconds, peak RSS MiB)."""
    t = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr[-2000:]}")
    rss_kb = int(p.stderr.strip().splitlines()[-1])
    return wall, rss_kb / 1024

def dataset(tiering, n):
    d = os.path.join(HERE, "data", f"{n}")
    if not os.path.exists(os.path.join(d, "transactions.csv")):
        customers = max(1000, n // 10)
        subprocess.run([tiering, "generate", "--customers", str(customers), "--transactions", str(n),
                        "--years", "3", "--seed", "42", "--interactions", "0", "--out", d], check=True)
    pq = os.path.join(d, "transactions.parquet")
    if not os.path.exists(pq):
        import polars as pl
        pl.scan_csv(os.path.join(d, "transactions.csv"), try_parse_dates=True, schema_overrides={"txn_id": pl.String, "customer_id": pl.String}).sink_parquet(pq)
    return d

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiering", required=True)
    ap.add_argument("--sizes", default="1000000,10000000")
    ap.add_argument("--huge", action="store_true", help="also 10^8 transactions")
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")] + ([100_000_000] if a.huge else [])
    py = sys.executable
    results = {"date": datetime.date.today().isoformat(), "machine": machine(), "sizes": []}
    for n in sizes:
        d = dataset(a.tiering, n)
        t, c = os.path.join(d, "transactions.csv"), os.path.join(d, "customers.csv")
        outs = {k: os.path.join(d, "out-" + k) for k in ["tiering", "duckdb", "polars", "tiering_pq", "backfill"]}
        cmds = {
            "tiering": [a.tiering, "-q", "run", "--transactions", t, "--customers", c, "--as-of", AS_OF,
                        "--out", outs["tiering"], "--overwrite"],
            "duckdb": [py, os.path.join(HERE, "peers", "pipeline_duckdb.py"), t, c, AS_OF, outs["duckdb"]],
            "polars": [py, os.path.join(HERE, "peers", "pipeline_polars.py"), t, c, AS_OF, outs["polars"]],
            "tiering_parquet_in": [a.tiering, "-q", "run", "--transactions", os.path.join(d, "transactions.parquet"),
                                   "--customers", c, "--as-of", AS_OF, "--out", outs["tiering_pq"], "--overwrite"],
            "backfill_8_quarters": [a.tiering, "-q", "backfill", "--transactions", t, "--customers", c,
                                    "--from", "2009-03-31", "--to", AS_OF, "--every", "quarter",
                                    "--out", outs["backfill"], "--overwrite"],
        }
        runs = {k: [] for k in cmds}
        for rep in range(a.reps):
            order = list(cmds) if rep % 2 == 0 else list(reversed(cmds))
            for k in order:
                runs[k].append(timed(cmds[k]))
                print(f"{n:>11,} {k:<20} {runs[k][-1][0]:7.2f}s {runs[k][-1][1]:8.0f} MiB", flush=True)
        agree = subprocess.run([py, os.path.join(HERE, "peers", "compare.py"),
                                os.path.join(outs["tiering"], f"snapshot={AS_OF}", "customer_scores.parquet"),
                                os.path.join(outs["duckdb"], "customer_scores.parquet"),
                                os.path.join(outs["polars"], "customer_scores.parquet")],
                               capture_output=True, text=True)
        med = {k: {"seconds": statistics.median(x[0] for x in v), "peak_rss_mib": max(x[1] for x in v)}
               for k, v in runs.items()}
        row = {"transactions": n, "csv_bytes": os.path.getsize(t), "medians": med,
               "ratios": {
                   "duckdb_over_tiering": med["duckdb"]["seconds"] / med["tiering"]["seconds"],
                   "polars_over_tiering": med["polars"]["seconds"] / med["tiering"]["seconds"],
                   "csv_over_parquet_input": med["tiering"]["seconds"] / med["tiering_parquet_in"]["seconds"],
                   "backfill8_over_single": med["backfill_8_quarters"]["seconds"] / med["tiering"]["seconds"],
               },
               "agreement": agree.stdout.strip() + agree.stderr.strip()[-500:]}
        results["sizes"].append(row)
        print(json.dumps(row["ratios"]), row["agreement"], flush=True)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    base = os.path.join(HERE, "results", results["date"])
    with open(base + ".json", "w") as f:
        json.dump(results, f, indent=2)
    with open(base + ".md", "w") as f:
        f.write(markdown(results))
    print(markdown(results))

def machine():
    return {"cpus": os.cpu_count(), "platform": platform.platform(),
            "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}

def markdown(r):
    lines = [f"Run {r['date']} on {r['machine']['cpus']} cores, {r['machine']['mem_gib']} GiB ({r['machine']['platform']}).", "",
             "| transactions | tiering s | DuckDB s | polars s | DuckDB/tiering | polars/tiering | tiering RSS MiB | DuckDB RSS | polars RSS | Parquet-in speed-up | backfill 8 q / 1 run | outputs agree |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in r["sizes"]:
        m, q = s["medians"], s["ratios"]
        lines.append(f"| {s['transactions']:,} | {m['tiering']['seconds']:.2f} | {m['duckdb']['seconds']:.2f} | {m['polars']['seconds']:.2f} | "
                     f"{q['duckdb_over_tiering']:.2f}× | {q['polars_over_tiering']:.2f}× | {m['tiering']['peak_rss_mib']:.0f} | "
                     f"{m['duckdb']['peak_rss_mib']:.0f} | {m['polars']['peak_rss_mib']:.0f} | {q['csv_over_parquet_input']:.2f}× | "
                     f"{q['backfill8_over_single']:.2f}× | {s['agreement'].splitlines()[-1] if s['agreement'] else '?'} |")
    return "\n".join(lines) + "\n"

if __name__ == "__main__":
    main()
