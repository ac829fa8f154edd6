"""Shared definitions for the peer pipelines (the same as tiering's defaults).

Both peers compute, from the same CSV files: validated transactions (empty
ids, bad dates and amounts rejected; duplicate txn_id collapsed to the first;
rows after the as-of date excluded), per-customer measures over all history,
tie-safe quantile RFM scores (score = 1 + floor(5(r-1)/n), r the min rank),
the english11 segments, the customer-share pyramid (1/5/20%, ties take the
higher tier, contribution <= 0 -> D), fixed-day churn (90/180), and the
rfm_segments and pyramid summaries; each table written as Parquet and CSV.
"""

ENGLISH11 = [
    ("Champions", (5, 5), (4, 5)),
    ("Loyal", (3, 4), (4, 5)),
    ("Potential Loyalist", (4, 5), (2, 3)),
    ("New", (5, 5), (1, 1)),
    ("Promising", (4, 4), (1, 1)),
    ("Need Attention", (3, 3), (3, 3)),
    ("About to Sleep", (3, 3), (1, 2)),
    ("Cannot Lose Them", (1, 2), (5, 5)),
    ("At Risk", (1, 2), (3, 4)),
    ("Lost", (1, 1), (1, 1)),
    ("Hibernating", (1, 2), (1, 2)),
]
