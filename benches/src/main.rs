//! The bench runner (to come).
fn main() {}
