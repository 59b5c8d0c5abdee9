//! What peers hand us besides gRPC framing: peer cards, log records (the
//! bytes a pull carries), key histories. The first byte picks which.
#![no_main]

use hashfed::identity::keys::KeyHistory;
use hashfed::model::Record;
use hashfed::peers::PeerCard;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    match pick % 3 {
        0 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                if let Ok(card) = PeerCard::parse(text) {
                    let again = PeerCard::parse(&card.to_toml().unwrap()).unwrap();
                    assert_eq!(again, card);
                }
            }
        }
        1 => {
            if let Ok(record) = Record::decode(rest) {
                assert_eq!(Record::decode(&record.encode()).unwrap(), record);
            }
        }
        _ => {
            if let Ok(history) = serde_json::from_slice::<KeyHistory>(rest) {
                let _ = history.keys();
            }
        }
    }
});
