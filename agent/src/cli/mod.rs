//! Terminal front ends of the `sluice` command that are more than a few lines.

pub mod top;
