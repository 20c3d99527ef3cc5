//! HTTP-level tests of the demo app's contract (see README.md).

mod accounts;
mod errors;
mod members;
mod serve;
mod support;
mod teams;
