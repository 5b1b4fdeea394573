//! vip-sim: a faithful VIP User Services simulator.
