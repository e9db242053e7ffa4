//! The risk service's reference data parser (`ReferenceData::parse`) on
//! arbitrary bytes: a validated data set or an error naming the problem,
//! never a panic. (The risk service reloads the file while serving.)

#![no_main]

use libfuzzer_sys::fuzz_target;
use orex_risk::reference::ReferenceData;

fuzz_target!(|data: &[u8]| {
    let _ = ReferenceData::parse(data);
});
