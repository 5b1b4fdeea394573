//! vip-bench: a RADIUS load generator (`vip-load`), a bare UDP echo limit and a PAM-socket
//! load driver, for side-by-side baselines of vip-bridge, FreeRADIUS and the machine, and a
//! soak of mixed logins that watches the server's memory and file descriptors.

pub mod echo;
pub mod idalloc;
pub mod load;
pub mod pam;
pub mod procstat;
pub mod radius;
pub mod soak;
pub mod stats;
pub mod template;
pub mod totp;
