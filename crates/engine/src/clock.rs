//! Clocks for bookkeeping. Timestamps and expiries have one-second granularity, so
//! the kernel's coarse clocks (a few milliseconds of resolution, no syscall and
//! far cheaper than the precise ones) are used where available.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix seconds.
pub fn now_unix() -> u64 {
    #[cfg(target_os = "linux")]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; CLOCK_REALTIME_COARSE exists on Linux.
        if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) } == 0 {
            return u64::try_from(ts.tv_sec).unwrap_or(0);
        }
    }
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn agrees_with_system_time() {
        let std = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(super::now_unix().abs_diff(std) <= 1);
    }
}
