//! The VIP User Services client.
