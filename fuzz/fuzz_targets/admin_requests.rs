//! The admin service's request handling over a real database: any bytes an
//! operator's tool could send, decoded as one RPC's request (the first byte
//! picks it), must give an answer or a status, never a panic or a store
//! that no longer verifies.
#![no_main]

use std::sync::{Arc, OnceLock};

use hashfed::database::Database;
use hashfed::model::SetInfo;
use hashfed::service::admin::AdminService;
use hashfed::service::proto;
use hashfed::service::proto::admin_server::Admin;
use hashfed::store::StoreOptions;
use libfuzzer_sys::fuzz_target;
use prost::Message;

struct World {
    runtime: tokio::runtime::Runtime,
    service: AdminService,
    db: Arc<Database>,
    _dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(&dir.path().join("store"), &StoreOptions::default()).unwrap();
        db.create_set(SetInfo::new("fuzz/list".parse().unwrap()))
            .unwrap();
        let mut vetted = SetInfo::new("fuzz/vetted".parse().unwrap());
        vetted.vetting = 2;
        db.create_set(vetted).unwrap();
        let db = Arc::new(db);
        World {
            runtime: tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap(),
            service: AdminService::new(db.clone(), "fuzz".into(), "fuzz".into()),
            db,
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let w = world();
    let s = &w.service;
    macro_rules! call {
        ($method:ident, $request:ty) => {
            if let Ok(req) = <$request>::decode(rest) {
                let _ = s.$method(tonic::Request::new(req)).await;
            }
        };
    }
    w.runtime.block_on(async {
        match pick % 10 {
            0 => call!(get_entry, proto::EntryRef),
            1 => call!(retract, proto::RetractRequest),
            2 => call!(set_entry_disabled, proto::SetEntryDisabledRequest),
            3 => call!(submit_entry, proto::SubmitEntryRequest),
            4 => call!(confirm_entry, proto::EntryRef),
            5 => call!(reject_entry, proto::RejectEntryRequest),
            6 => call!(list_pending, proto::ListPendingRequest),
            7 => call!(set_suppressed, proto::SetSuppressedRequest),
            8 => call!(report, proto::ReportRequest),
            _ => call!(list_audit, proto::ListAuditRequest),
        }
    });
    // Every 256th run, the store must still verify.
    if pick == 255 {
        let report = w.db.store().verify().unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    }
});
