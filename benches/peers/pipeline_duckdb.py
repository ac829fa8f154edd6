"""The tiering core pipeline as one DuckDB SQL script (see common.py)."""
import sys, os
import duckdb
from common import ENGLISH11

txns, customers, as_of, out = sys.argv[1:5]
os.makedirs(out, exist_ok=True)
threads = os.environ.get("PEER_THREADS")
con = duckdb.connect()
if threads:
    con.execute(f"SET threads = {int(threads)}")

seg_case = "CASE " + " ".join(
    f"WHEN r_score BETWEEN {r[0]} AND {r[1]} AND f_score BETWEEN {f[0]} AND {f[1]} THEN '{n}'"
    for n, r, f in ENGLISH11) + " ELSE 'Other' END"

con.execute(f"""
CREATE TABLE raw AS
SELECT row_number() OVER () AS line, *
FROM read_csv('{txns}', header = true, all_varchar = true);

CREATE TABLE parsed AS
SELECT line,
       nullif(trim(customer_id), '') AS customer_id,
       nullif(trim(txn_id), '') AS txn_id,
       -- Dates, or timestamps with a time of day (the uniform bench data).
       coalesce(try_strptime(trim(ts), '%Y-%m-%d'),
                try_strptime(trim(ts), '%Y-%m-%d %H:%M:%S'))::DATE AS ts,
       CAST(round(TRY_CAST(trim(amount) AS DOUBLE) * 100) AS BIGINT) AS amount_cents,
       CAST(round(TRY_CAST(trim(margin) AS DOUBLE) * 100) AS BIGINT) AS margin_cents
FROM raw;

CREATE TABLE valid AS
SELECT * FROM (
  SELECT *, row_number() OVER (PARTITION BY txn_id ORDER BY line) AS k
  FROM parsed
  WHERE customer_id IS NOT NULL AND txn_id IS NOT NULL AND ts IS NOT NULL AND amount_cents IS NOT NULL
) WHERE k = 1 AND ts <= DATE '{as_of}';

CREATE TABLE m AS
SELECT customer_id,
       coalesce(min(ts) FILTER (WHERE amount_cents > 0), min(ts)) AS first_purchase,
       coalesce(max(ts) FILTER (WHERE amount_cents > 0), max(ts)) AS last_purchase,
       count(*) FILTER (WHERE amount_cents > 0) AS frequency,
       sum(amount_cents) AS monetary_cents,
       sum(margin_cents) AS contribution_cents
FROM valid GROUP BY customer_id;

CREATE TABLE cust AS
SELECT DISTINCT ON (customer_id) customer_id, coalesce(nullif(region, ''), 'unknown') AS region,
       coalesce(nullif(industry, ''), 'unknown') AS industry
FROM read_csv('{customers}', header = true, all_varchar = true) WHERE nullif(trim(customer_id), '') IS NOT NULL;

CREATE TABLE base AS
SELECT coalesce(m.customer_id, c.customer_id) AS customer_id,
       coalesce(c.region, 'unknown') AS region, coalesce(c.industry, 'unknown') AS industry,
       m.first_purchase IS NOT NULL AS in_scope,
       m.first_purchase, m.last_purchase,
       (DATE '{as_of}' - m.last_purchase) AS recency_days,
       coalesce(m.frequency, 0) AS frequency,
       coalesce(m.monetary_cents, 0) AS monetary_cents,
       (DATE '{as_of}' - m.first_purchase) AS tenure_days,
       coalesce(m.contribution_cents, 0) AS contribution_cents
FROM m FULL OUTER JOIN cust c ON m.customer_id = c.customer_id;

CREATE TABLE scored AS
WITH s AS (SELECT count(*) AS n FROM base WHERE in_scope),
r AS (
  SELECT b.*,
    CASE WHEN in_scope THEN 1 + (5 * (rank() OVER (PARTITION BY in_scope ORDER BY recency_days DESC) - 1)) // s.n END AS r_score,
    CASE WHEN in_scope THEN 1 + (5 * (rank() OVER (PARTITION BY in_scope ORDER BY frequency) - 1)) // s.n END AS f_score,
    CASE WHEN in_scope THEN 1 + (5 * (rank() OVER (PARTITION BY in_scope ORDER BY monetary_cents) - 1)) // s.n END AS m_score,
    CASE WHEN in_scope THEN rank() OVER (PARTITION BY in_scope ORDER BY contribution_cents DESC) END AS contribution_rank,
    s.n
  FROM base b, s)
SELECT customer_id, region, industry, in_scope, first_purchase, last_purchase, recency_days,
       frequency, monetary_cents / 100.0 AS monetary, tenure_days, r_score, f_score, m_score,
       r_score::VARCHAR || f_score::VARCHAR || m_score::VARCHAR AS rfm_code,
       CASE WHEN r_score IS NULL THEN NULL ELSE {seg_case} END AS rfm_segment,
       contribution_cents / 100.0 AS contribution, contribution_rank,
       CASE WHEN NOT in_scope THEN NULL
            WHEN contribution_cents <= 0 THEN 'D'
            WHEN 100.0 * (contribution_rank - 1) < 1 * n THEN 'A'
            WHEN 100.0 * (contribution_rank - 1) < 5 * n THEN 'B'
            WHEN 100.0 * (contribution_rank - 1) < 20 * n THEN 'C'
            ELSE 'D' END AS pyramid_tier,
       CASE WHEN recency_days IS NULL THEN 'no_purchase' WHEN recency_days <= 90 THEN 'active'
            WHEN recency_days <= 180 THEN 'sleeping' ELSE 'lost' END AS churn_status,
       monetary_cents, contribution_cents
FROM r;

COPY (SELECT * EXCLUDE (monetary_cents, contribution_cents) FROM scored ORDER BY customer_id)
  TO '{out}/customer_scores.parquet' (FORMAT parquet, COMPRESSION zstd);
COPY (SELECT * EXCLUDE (monetary_cents, contribution_cents) FROM scored ORDER BY customer_id)
  TO '{out}/customer_scores.csv' (HEADER);
COPY (SELECT rfm_segment, count(*) AS customers, count(*) / sum(count(*)) OVER () AS customer_share,
             sum(monetary_cents) / 100.0 AS revenue, sum(monetary_cents) / sum(sum(monetary_cents)) OVER () AS revenue_share
      FROM scored WHERE in_scope GROUP BY rfm_segment ORDER BY rfm_segment)
  TO '{out}/rfm_segments.parquet' (FORMAT parquet);
COPY (SELECT pyramid_tier, count(*) AS customers, count(*) / sum(count(*)) OVER () AS customer_share,
             sum(contribution_cents) / 100.0 AS contribution,
             sum(contribution_cents) / sum(sum(contribution_cents)) OVER () AS contribution_share,
             avg(contribution_cents) / 100.0 AS mean_contribution,
             min(contribution_cents) / 100.0 AS min_contribution, max(contribution_cents) / 100.0 AS max_contribution
      FROM scored WHERE in_scope GROUP BY pyramid_tier ORDER BY pyramid_tier)
  TO '{out}/pyramid.parquet' (FORMAT parquet);
""")
