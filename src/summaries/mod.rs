//! Summary stages over graded customers: concentration by dimension and
//! year, churn, the follow-up call list, tier migration and lost-deal
//! reasons. Each reads the scored customers, never another stage's output.

pub mod churn;
pub mod concentration;
pub mod follow_up;
pub mod lost_deals;
pub mod migration;
