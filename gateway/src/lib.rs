#![doc = include_str!("../../README.md")]

pub mod audit_cli;
pub mod authn;
pub mod cli;
pub mod config;
pub mod console;
pub mod demo;
pub mod error;
pub mod identity;
pub mod policy_cli;
pub mod query;
pub mod server;
pub mod services;
pub mod share;
pub mod status;
pub mod telemetry;
pub mod tls;
