//! The published gRPC services.

pub mod admin;
pub mod oversight;
pub mod sharing;
