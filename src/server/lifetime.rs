//! What ties the HTTP/2 server's own tasks to the node's [`Tasks`].
//!
//! tonic runs each connection, and hyper each call, in a task of its own
//! that the node cannot join. Two wrappers make them end with the node
//! all the same:
//!
//! * [`TrackCalls`]: every call's future counts as one of the node's
//!   tasks until it is dropped (the future holds the service, and so the
//!   database), so [`Tasks::wait`] also waits for calls;
//! * [`Cuttable`]: every connection fails once the node cuts
//!   ([`Tasks::cut`], at the end of the grace period), so a connection
//!   that would not close gracefully (a stalled caller, an import still
//!   running) closes anyway, its calls end and the listener's serve
//!   future returns.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::WaitForCancellationFutureOwned;
use tokio_util::task::task_tracker::TaskTrackerToken;

use crate::tasks::Tasks;

/// A layer counting every call as one of the node's tasks.
#[derive(Clone)]
pub(super) struct TrackCalls(pub(super) Tasks);

impl<S> tower::Layer<S> for TrackCalls {
    type Service = Tracked<S>;

    fn layer(&self, inner: S) -> Tracked<S> {
        Tracked {
            inner,
            tasks: self.0.clone(),
        }
    }
}

/// A service whose calls count as tasks (see [`TrackCalls`]).
#[derive(Clone)]
pub(super) struct Tracked<S> {
    inner: S,
    tasks: Tasks,
}

impl<S, R> tower::Service<R> for Tracked<S>
where
    S: tower::Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = TrackedCall<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        TrackedCall {
            _token: self.tasks.token(),
            call: Some(Box::pin(self.inner.call(request))),
        }
    }
}

/// A call's future and its task token; the token is released only after
/// the future (and what it holds) has been dropped.
pub(super) struct TrackedCall<F> {
    call: Option<Pin<Box<F>>>,
    _token: TaskTrackerToken,
}

impl<F: Future> Future for TrackedCall<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let Some(call) = this.call.as_mut() else {
            // Polled after it completed: it never completes again.
            return Poll::Pending;
        };
        let output = ready!(call.as_mut().poll(cx));
        this.call = None;
        Poll::Ready(output)
    }
}

impl<F> Drop for TrackedCall<F> {
    fn drop(&mut self) {
        // The call first: the token, a field, is dropped after this body.
        self.call = None;
    }
}

/// A connection that fails once the node cuts: every read, write and
/// flush then returns `ConnectionAborted`, and a read or write waiting
/// is woken, so the HTTP/2 connection and every call on it end.
pub(super) struct Cuttable<IO> {
    io: IO,
    /// Two waits, so that a reader and a writer polled from different
    /// tasks are both woken. Each connection has its own child token:
    /// polling one does not contend with other connections.
    read_cut: Pin<Box<WaitForCancellationFutureOwned>>,
    write_cut: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Set once either wait completed (they are not polled again).
    cut: bool,
}

impl<IO> Cuttable<IO> {
    /// `io`, cut when `tasks` cuts.
    pub(super) fn new(io: IO, tasks: &Tasks) -> Self {
        let token = tasks.cutting().child_token();
        Cuttable {
            io,
            read_cut: Box::pin(token.clone().cancelled_owned()),
            write_cut: Box::pin(token.cancelled_owned()),
            cut: false,
        }
    }

    fn poll_cut(&mut self, cx: &mut Context<'_>, write: bool) -> bool {
        if !self.cut {
            let wait = if write {
                &mut self.write_cut
            } else {
                &mut self.read_cut
            };
            if wait.as_mut().poll(cx).is_ready() {
                self.cut = true;
            }
        }
        self.cut
    }
}

fn cut_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "node stopping")
}

impl<IO: AsyncRead + Unpin> AsyncRead for Cuttable<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.poll_cut(cx, false) {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Cuttable<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.poll_cut(cx, true) {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.poll_cut(cx, true) {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.poll_cut(cx, true) {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.poll_cut(cx, true) {
            // Nothing more is sent; dropping the stream closes it.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

impl<IO: tonic::transport::server::Connected> tonic::transport::server::Connected for Cuttable<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}
