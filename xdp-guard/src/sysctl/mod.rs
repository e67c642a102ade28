//! Sysctl audit, apply and restore (being written).
