"""The tiering core pipeline as a Python polars script (see common.py)."""
import sys, os
from datetime import date
import polars as pl
from common import ENGLISH11

txns, customers, as_of, out = sys.argv[1:5]
os.makedirs(out, exist_ok=True)
D = date.fromisoformat(as_of)

def clean(c):
    s = pl.col(c).str.strip_chars()
    return pl.when(s.str.len_bytes() == 0).then(None).otherwise(s)

def cents(c):
    return (clean(c).cast(pl.Float64, strict=False) * 100).round(0).cast(pl.Int64)

raw = pl.scan_csv(txns, infer_schema_length=0).with_row_index("line")
parsed = raw.select(
    "line",
    clean("customer_id").alias("customer_id"),
    clean("txn_id").alias("txn_id"),
    # Dates, or timestamps with a time of day (the uniform bench data).
    pl.coalesce(
        clean("ts").str.to_date("%Y-%m-%d", strict=False),
        clean("ts").str.to_datetime("%Y-%m-%d %H:%M:%S", strict=False).dt.date(),
    ).alias("ts"),
    cents("amount").alias("amount_cents"),
    cents("margin").alias("margin_cents"),
)
valid = (
    parsed.filter(pl.all_horizontal(pl.col("customer_id", "txn_id", "ts", "amount_cents").is_not_null()))
    .unique("txn_id", keep="first", maintain_order=True)
    .filter(pl.col("ts") <= D)
)
purchase = pl.col("amount_cents") > 0
m = valid.group_by("customer_id").agg(
    pl.coalesce(pl.col("ts").filter(purchase).min(), pl.col("ts").min()).alias("first_purchase"),
    pl.coalesce(pl.col("ts").filter(purchase).max(), pl.col("ts").max()).alias("last_purchase"),
    purchase.sum().cast(pl.Int64).alias("frequency"),
    pl.col("amount_cents").sum().alias("monetary_cents"),
    pl.col("margin_cents").sum().alias("contribution_cents"),
)
cust = (
    pl.scan_csv(customers, infer_schema_length=0)
    .select(clean("customer_id").alias("customer_id"), clean("region").alias("region"), clean("industry").alias("industry"))
    .filter(pl.col("customer_id").is_not_null())
    .unique("customer_id", keep="first", maintain_order=True)
)
base = m.join(cust, on="customer_id", how="full", coalesce=True).with_columns(
    pl.col("first_purchase").is_not_null().alias("in_scope"),
    pl.col("region").fill_null("unknown"),
    pl.col("industry").fill_null("unknown"),
    (pl.lit(D) - pl.col("last_purchase")).dt.total_days().cast(pl.Int32).alias("recency_days"),
    (pl.lit(D) - pl.col("first_purchase")).dt.total_days().cast(pl.Int32).alias("tenure_days"),
    pl.col("frequency").fill_null(0),
    pl.col("monetary_cents").fill_null(0),
    pl.col("contribution_cents").fill_null(0),
)

def score(expr, descending):
    v = pl.when(pl.col("in_scope")).then(expr)
    r = v.rank("min", descending=descending).cast(pl.Int64)
    return (1 + (5 * (r - 1)) // v.count()).cast(pl.Int32)

seg = pl.lit("Other")
for name, r, f in reversed(ENGLISH11):
    seg = pl.when(pl.col("r_score").is_between(*r) & pl.col("f_score").is_between(*f)).then(pl.lit(name)).otherwise(seg)

c = pl.when(pl.col("in_scope")).then(pl.col("contribution_cents"))
n = pl.col("in_scope").sum()
rank = c.rank("min", descending=True).cast(pl.Int64)
pos = 100.0 * (pl.col("contribution_rank") - 1)
scored = (
    base.with_columns(
        score(pl.col("recency_days"), True).alias("r_score"),
        score(pl.col("frequency"), False).alias("f_score"),
        score(pl.col("monetary_cents"), False).alias("m_score"),
        rank.alias("contribution_rank"),
        n.alias("n"),
    )
    .with_columns(
        pl.concat_str(pl.col("r_score", "f_score", "m_score").cast(pl.String)).alias("rfm_code"),
        pl.when(pl.col("r_score").is_null()).then(None).otherwise(seg).alias("rfm_segment"),
        pl.when(~pl.col("in_scope")).then(None)
        .when(pl.col("contribution_cents") <= 0).then(pl.lit("D"))
        .when(pos < 1 * pl.col("n")).then(pl.lit("A"))
        .when(pos < 5 * pl.col("n")).then(pl.lit("B"))
        .when(pos < 20 * pl.col("n")).then(pl.lit("C"))
        .otherwise(pl.lit("D")).alias("pyramid_tier"),
        pl.when(pl.col("recency_days").is_null()).then(pl.lit("no_purchase"))
        .when(pl.col("recency_days") <= 90).then(pl.lit("active"))
        .when(pl.col("recency_days") <= 180).then(pl.lit("sleeping"))
        .otherwise(pl.lit("lost")).alias("churn_status"),
        (pl.col("monetary_cents") / 100).alias("monetary"),
        (pl.col("contribution_cents") / 100).alias("contribution"),
    )
    .sort("customer_id")
    .collect()
)
cols = ["customer_id", "region", "industry", "in_scope", "first_purchase", "last_purchase", "recency_days",
        "frequency", "monetary", "tenure_days", "r_score", "f_score", "m_score", "rfm_code", "rfm_segment",
        "contribution", "contribution_rank", "pyramid_tier", "churn_status"]
scored.select(cols).write_parquet(f"{out}/customer_scores.parquet", compression="zstd")
scored.select(cols).write_csv(f"{out}/customer_scores.csv")
ins = scored.lazy().filter(pl.col("in_scope"))
ins.group_by("rfm_segment").agg(
    pl.len().alias("customers"), (pl.col("monetary_cents").sum() / 100).alias("revenue"),
).with_columns(
    (pl.col("customers") / pl.col("customers").sum()).alias("customer_share"),
    (pl.col("revenue") / pl.col("revenue").sum()).alias("revenue_share"),
).sort("rfm_segment").collect().write_parquet(f"{out}/rfm_segments.parquet")
ins.group_by("pyramid_tier").agg(
    pl.len().alias("customers"), (pl.col("contribution_cents").sum() / 100).alias("contribution"),
    (pl.col("contribution_cents").mean() / 100).alias("mean_contribution"),
    (pl.col("contribution_cents").min() / 100).alias("min_contribution"),
    (pl.col("contribution_cents").max() / 100).alias("max_contribution"),
).with_columns(
    (pl.col("customers") / pl.col("customers").sum()).alias("customer_share"),
    (pl.col("contribution") / pl.col("contribution").sum()).alias("contribution_share"),
).sort("pyramid_tier").collect().write_parquet(f"{out}/pyramid.parquet")
