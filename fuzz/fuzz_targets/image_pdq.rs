//! Untrusted image bytes through the decoder and PDQ (what MatchImage and
//! `hashfed hash` do): an error is fine, a panic, a hang or an allocation
//! past the limits is not.
#![no_main]

use hashfed::signal::content::{hash_image, HashOptions};
use hashfed::signal::pdq::PdqHasher;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut hasher = PdqHasher::new();
    let options = HashOptions {
        dihedral: data.len() % 2 == 1,
        ..HashOptions::default()
    };
    if let Ok(hashes) = hash_image(data, &options, &mut hasher) {
        assert!(hashes.width > 0 && hashes.height > 0);
    }
});
