//! The reactor: one mio event loop and the per-peer state machines.
