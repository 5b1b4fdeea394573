//! pam_vip.so
