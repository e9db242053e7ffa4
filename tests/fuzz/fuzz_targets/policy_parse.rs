//! The partnership policy parser (`Partnership::parse`) on arbitrary text:
//! a valid policy or an error naming the problem, never a panic. (The
//! gateway and every service reload the file while serving.)

#![no_main]

use libfuzzer_sys::fuzz_target;
use orex_membership::Partnership;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Partnership::parse(text, std::path::Path::new("/nonexistent"));
    }
});
