//! Cross-process conformance tooling for Liaison deployments.
//!
//! The suites here drive a gateway from outside, through the published API
//! only; they never reach into the gateway's internals. This crate also owns
//! the harness around the real third-party OpenID provider
//! (`oidc-provider/`, the `oidc-provider` npm package) that tests use to
//! obtain genuine tokens for test agencies.

pub mod checks;
pub mod kit;
pub mod oidc;
pub mod protodoc;
