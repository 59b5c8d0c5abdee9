//! Every import format over arbitrary bytes (the first byte picks the
//! format): the parser yields records and errors and ends, never panics
//! and never loops.
#![no_main]

use hashfed::import::{detect, parse, Format};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, input)) = data.split_first() else {
        return;
    };
    let _ = detect(input, None);
    let format = Format::ALL[usize::from(pick) % Format::ALL.len()];
    let mut seen = 0usize;
    for item in parse(format, std::io::Cursor::new(input)) {
        seen += 1;
        // Each item consumes input: more items than bytes means a loop.
        assert!(seen <= input.len() + 1, "{format}: more items than bytes");
        if let Err(e) = item {
            if e.fatal {
                break;
            }
        }
    }
});
