//! TCP state views from netlink sock_diag (being written).
