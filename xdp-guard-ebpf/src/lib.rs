//! Empty host-side library so that `xdp-guard` can name this crate as a build dependency
//! (cargo then rebuilds the embedded object when it changes). The program is `src/main.rs`.
#![no_std]
