//! Hash strings as users, files and peers give them: signal values of
//! every type, set ids and entry ids. Whatever parses must print back to
//! something that parses to the same value.
#![no_main]

use hashfed::model::{EntryId, SetId, Signal};
use libfuzzer_sys::fuzz_target;

const TYPES: [&str; 8] = [
    "pdq", "md5", "sha1", "sha256", "blake3", "pdna", "video_md5", "x-opaque",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let kind = TYPES[usize::from(pick) % TYPES.len()];
    if let Ok(signal) = Signal::parse(kind, text) {
        let again = Signal::parse(kind, &signal.value_hex())
            .or_else(|_| Signal::parse(signal.kind().name(), &signal.value_hex()));
        if let Ok(again) = again {
            assert_eq!(again.value_hex(), signal.value_hex());
        }
    }
    if let Ok(set) = text.parse::<SetId>() {
        assert_eq!(set.to_string().parse::<SetId>().unwrap(), set);
    }
    if let Ok(id) = text.parse::<EntryId>() {
        assert_eq!(id.to_string().parse::<EntryId>().unwrap(), id);
    }
});
