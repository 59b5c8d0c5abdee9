//! The match service's request handling over a real database: any bytes a
//! local service could send, decoded as the request of one RPC (the first
//! byte picks it), must give an answer or a status, never a panic.
#![no_main]

use std::sync::{Arc, OnceLock};

use hashfed::database::Database;
use hashfed::metrics::Metrics;
use hashfed::model::{EntryData, SetInfo, Signal, SignalType};
use hashfed::service::matching::MatchService;
use hashfed::service::proto;
use hashfed::service::proto::match_server::Match;
use hashfed::store::{Change, StoreOptions};
use libfuzzer_sys::fuzz_target;
use prost::Message;

struct World {
    runtime: tokio::runtime::Runtime,
    service: MatchService,
    _dir: tempfile::TempDir,
}

/// One database with a few entries, shared by every run.
fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(&dir.path().join("store"), &StoreOptions::default()).unwrap();
        let set = "fuzz/list".parse().unwrap();
        db.create_set(SetInfo::new(set)).unwrap();
        let changes: Vec<Change> = (0u8..16)
            .map(|i| {
                Change::Add(EntryData {
                    signal: Signal::from_bytes(SignalType::Pdq, vec![i.wrapping_mul(37); 32])
                        .unwrap(),
                    labels: vec!["A1".into()],
                    external_id: None,
                    vetting: vec![],
                })
            })
            .collect();
        db.apply(&"fuzz/list".parse().unwrap(), &changes).unwrap();
        let db = Arc::new(db);
        World {
            runtime: tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap(),
            service: MatchService::new(db, Arc::new(Metrics::default())),
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let w = world();
    w.runtime.block_on(async {
        match pick % 3 {
            0 => {
                if let Ok(req) = proto::MatchRequest::decode(rest) {
                    let _ = w.service.match_hashes(tonic::Request::new(req)).await;
                }
            }
            1 => {
                if let Ok(req) = proto::MatchImageRequest::decode(rest) {
                    let _ = w.service.match_image(tonic::Request::new(req)).await;
                }
            }
            _ => {
                if let Ok(req) = proto::FeedbackRequest::decode(rest) {
                    let _ = w.service.feedback(tonic::Request::new(req)).await;
                }
            }
        }
    });
});
