//! Process-wide tuning of glibc's allocator, made once when a process starts (`main`, and the
//! benchmarks that stand for it), before any thread that allocates much exists.
//!
//! Guarantees: on Linux with glibc, [`tune`] fixes the mmap threshold at [`MMAP_FROM`] and
//! allows at most one heap (arena) per core; [`release_freed_memory`] gives free heap pages back
//! to the kernel. Elsewhere both do nothing. Neither changes what any allocation returns.

/// Bytes from which an allocation gets pages of its own (mmap), given back when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_FROM: libc::c_int = 128 * 1024;

/// Tunes glibc's allocator for the whole process:
/// - the mmap threshold stays at [`MMAP_FROM`] (its default start). Evaluating rules makes large
///   short-lived buffers (a long message's decoded parts and joined body, lazy-DFA tables
///   growing); glibc raises its threshold to the size of each such buffer freed, up to 32 MiB,
///   so later ones come from the heap and their freed space stays resident between long-lived
///   allocations. Measured with the stock rules (bench/rules-soak, 2 threads, 15,000 real
///   messages): 192–195 MB resident instead of 200–202, same throughput;
/// - at most one heap (arena) per core instead of eight per core: the server's blocking pool
///   runs the parsing, classifying and spooling of messages on dozens of short-lived threads,
///   each of which would otherwise keep a heap of its own with its freed space
///   (bench/serve-soak: about 8 MB less resident). Set at start, before the runtime's threads
///   exist, so they too share the limited heaps.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune() {
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    let arenas = libc::c_int::try_from(cores).unwrap_or(libc::c_int::MAX);
    // SAFETY: mallopt only changes tuning parameters of glibc's allocator; a fixed mmap
    // threshold and an arena limit are valid at any time (allocations already made keep how
    // they were made; threads that have an arena keep it).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_FROM);
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune() {}

/// Gives free heap pages back to the operating system, e.g. after compiling a rule set (rule
/// text, translated patterns, parse trees: about 20 MB with the stock SpamAssassin rules); glibc
/// would otherwise keep them, between long-lived allocations, for later use by this thread.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn release_freed_memory() {
    // SAFETY: malloc_trim has no preconditions; it only returns free pages of the allocator's
    // own heaps to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_freed_memory() {}
