//! The input contract: the canonical columns of each table, the interaction
//! kinds and the reject reasons every stage and the configuration refer to.

/// Canonical interaction kinds (SPEC §2).
pub const INTERACTION_KINDS: [&str; 8] = [
    "call",
    "visit",
    "service",
    "event",
    "complaint",
    "complaint_resolved",
    "referral",
    "lost_deal",
];

pub(crate) const TXN_REQUIRED: &[&str] = &["customer_id", "txn_id", "ts", "amount"];
pub(crate) const TXN_OPTIONAL: &[&str] =
    &["quantity", "product_line", "channel", "margin", "currency"];
pub(crate) const CUST_REQUIRED: &[&str] = &["customer_id"];
pub(crate) const CUST_OPTIONAL: &[&str] = &[
    "name",
    "region",
    "industry",
    "segment",
    "first_seen",
    "sales_rep",
];
pub(crate) const INTER_REQUIRED: &[&str] = &["customer_id", "ts", "kind"];
pub(crate) const INTER_OPTIONAL: &[&str] =
    &["channel", "outcome", "ref_customer_id", "product_line"];

/// Reason texts, shared by ingest and the tests.
pub mod reason {
    pub const AFTER_AS_OF: &str = "after as_of";
    pub const DUPLICATE_TXN: &str = "duplicate txn_id";
    pub const DUPLICATE_CUSTOMER: &str = "duplicate customer_id";
}

pub(crate) fn required(table: &str) -> &'static [&'static str] {
    match table {
        "transactions" => TXN_REQUIRED,
        "customers" => CUST_REQUIRED,
        _ => INTER_REQUIRED,
    }
}

pub(crate) fn optional(table: &str) -> &'static [&'static str] {
    match table {
        "transactions" => TXN_OPTIONAL,
        "customers" => CUST_OPTIONAL,
        _ => INTER_OPTIONAL,
    }
}

/// Every canonical column of a table, required first.
pub fn canonical_columns(table: &str) -> Vec<&'static str> {
    required(table)
        .iter()
        .chain(optional(table))
        .copied()
        .collect()
}
