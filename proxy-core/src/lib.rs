//! proxy-core: the intercepting proxy.
//!
//! Work in progress; see [`hooks`] for the contract with scripts.

pub mod hooks;
