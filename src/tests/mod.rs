//! Native tests of the core through its traits: the token source's tiers, single flight,
//! hold-down, DPoP and the coordinator's answers, with a scripted token endpoint, a counting
//! store and a clock the tests move.

mod alarm;
mod coordinator;
mod discovery;
mod dpop;
mod evictions;
mod hostile;
mod known_settings;
mod refresh;
mod rotation;
mod source;
mod support;
