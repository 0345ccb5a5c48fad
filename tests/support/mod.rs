//! Helpers shared by the integration tests.
//!
//! Every test crate that declares `mod support;` compiles its own copy of these
//! modules and uses only part of them, so unused items are expected.
#![allow(dead_code)]

pub mod openssl_certs;
pub mod peers;
pub mod pkic_build;
pub mod tree;
