//! A fault-injecting TCP proxy for tests: put it between two nodes (give
//! one node's card the proxy's address) and make the link slow, stalled,
//! cut mid-stream or refusing, while TLS and gRPC run through it untouched.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the link does now (changed with [`FaultProxy::set`]).
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Added before each chunk is passed on, either way.
    pub delay: Duration,
    /// Nothing passes (connections stay open): a peer that stopped
    /// answering without closing.
    pub stall: bool,
    /// New connections are closed as soon as they are accepted.
    pub refuse: bool,
    /// Each connection is cut (both sides closed) after this many bytes
    /// passed, counting both directions.
    pub cut_after_bytes: Option<u64>,
}

/// A running proxy to one target.
pub struct FaultProxy {
    addr: SocketAddr,
    faults: watch::Sender<Faults>,
    /// Bumped by [`FaultProxy::cut_all`]: every open connection closes.
    cuts: watch::Sender<u64>,
    /// Connections accepted so far, and cut so far.
    pub accepted: Arc<AtomicU64>,
    /// Connections cut (by a byte limit or [`FaultProxy::cut_all`]).
    pub cut: Arc<AtomicU64>,
    _accept: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on 127.0.0.1 (port 0) and forwards to `target`.
    pub async fn start(target: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let faults = watch::Sender::new(Faults::default());
        let cuts = watch::Sender::new(0u64);
        let accepted = Arc::new(AtomicU64::new(0));
        let cut = Arc::new(AtomicU64::new(0));
        let (f, c, a, k) = (faults.clone(), cuts.clone(), accepted.clone(), cut.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::Relaxed);
                if f.borrow().refuse {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                let (f, c, k) = (f.subscribe(), c.subscribe(), k.clone());
                tokio::spawn(connection(client, server, f, c, k));
            }
        });
        FaultProxy {
            addr,
            faults,
            cuts,
            accepted,
            cut,
            _accept: accept,
        }
    }

    /// Where to connect instead of the target.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Changes the faults, for open connections too.
    pub fn set(&self, faults: Faults) {
        self.faults.send_replace(faults);
    }

    /// Closes every open connection now, in the middle of whatever it
    /// carries.
    pub fn cut_all(&self) {
        self.cuts.send_modify(|n| *n += 1);
    }
}

/// Passes bytes both ways under the current faults until either side
/// closes, the byte limit is reached, or a cut.
async fn connection(
    client: TcpStream,
    server: TcpStream,
    faults: watch::Receiver<Faults>,
    mut cuts: watch::Receiver<u64>,
    cut: Arc<AtomicU64>,
) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let passed = Arc::new(Mutex::new(0u64));
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = pump(cr, sw, faults.clone(), passed.clone());
    let down = pump(sr, cw, faults, passed);
    cuts.borrow_and_update();
    tokio::select! {
        outcome = up => if outcome { cut.fetch_add(1, Ordering::Relaxed); },
        outcome = down => if outcome { cut.fetch_add(1, Ordering::Relaxed); },
        _ = cuts.changed() => { cut.fetch_add(1, Ordering::Relaxed); }
    }
    // Dropping both halves closes both sockets.
}

/// One direction; `true` if it stopped because of the byte limit.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut faults: watch::Receiver<Faults>,
    passed: Arc<Mutex<u64>>,
) -> bool {
    let mut buf = vec![0u8; 16 << 10];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        loop {
            let now = faults.borrow_and_update().clone();
            if !now.stall {
                if !now.delay.is_zero() {
                    tokio::time::sleep(now.delay).await;
                }
                break;
            }
            if faults.changed().await.is_err() {
                return false;
            }
        }
        let limit = faults.borrow().cut_after_bytes;
        let over = {
            let mut total = passed.lock().unwrap();
            *total += n as u64;
            limit.is_some_and(|l| *total > l)
        };
        if over {
            return true;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return false;
        }
    }
}
