//! Customer-level grading: measures as of a date, then the tiering methods
//! that read them (RFM, the contribution pyramid, threshold and scorecard
//! tiers) and the tier vocabulary every summary shares.

pub mod engagement;
pub mod measures;
pub mod pyramid;
pub mod rfm;
pub mod schemes;
pub mod sorted;
pub mod table;
pub mod tiers;
