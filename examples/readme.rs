//! The readme example.
fn main() {}
