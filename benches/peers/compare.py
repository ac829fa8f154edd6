"""Checks that the peers' key outputs agree with tiering's: per customer
recency, frequency, monetary, R/F/M scores, segment and pyramid tier."""
import sys
import polars as pl

KEYS = ["customer_id", "recency_days", "frequency", "monetary", "r_score", "f_score", "m_score",
        "rfm_segment", "pyramid_tier", "churn_status"]

def load(path):
    df = pl.read_parquet(path).select(KEYS)
    return df.with_columns(
        pl.col("recency_days", "frequency", "r_score", "f_score", "m_score").cast(pl.Int64),
        (pl.col("monetary") * 100).round(0).cast(pl.Int64).alias("monetary"),
    ).sort("customer_id")

ours = load(sys.argv[1])
bad = 0
for peer in sys.argv[2:]:
    theirs = load(peer)
    if ours.height != theirs.height:
        print(f"{peer}: {theirs.height} customers, ours {ours.height}")
        bad += 1
        continue
    diff = ours.join(theirs, on="customer_id", suffix="_peer")
    for k in KEYS[1:]:
        n = diff.filter(~pl.col(k).eq_missing(pl.col(k + "_peer"))).height
        if n:
            print(f"{peer}: {k} differs for {n} customers")
            bad += 1
print("agree" if bad == 0 else f"DISAGREE ({bad})")
sys.exit(1 if bad else 0)
