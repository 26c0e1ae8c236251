//! Giving freed memory back to the operating system after a burst.
//!
//! glibc's allocator keeps what a program frees for its next allocations
//! and returns to the system only the free space at the top of each heap,
//! so a registry that held 15,000 connections for a moment kept 50 MiB
//! resident after they closed. `malloc_trim` returns every free page.
//! This module holds the workspace's one `unsafe` block.

/// Gives the allocator's free pages back to the operating system (glibc;
/// elsewhere nothing).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn give_back() {
    // SAFETY: malloc_trim has no preconditions: it only walks glibc's own
    // arenas, each under its lock, and releases pages nothing points into.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn give_back() {}
