//! The collage example.
fn main() {}
