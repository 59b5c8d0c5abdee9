//! The threatexchange client (being written: every call says so).

use super::http::Http;
use super::{Credentials, ExchangeError, OutgoingFeedback, Page};
use crate::config::ExchangeConfig;

/// A client of one threatexchange exchange.
#[derive(Debug)]
pub struct Client {
    _http: Http,
}

impl Client {
    /// The client for `config`.
    pub fn new(
        _config: &ExchangeConfig,
        _credentials: Credentials,
        http: Http,
    ) -> Result<Self, ExchangeError> {
        Ok(Client { _http: http })
    }

    /// The page after `cursor`.
    pub async fn fetch(&mut self, _cursor: &str) -> Result<Page, ExchangeError> {
        Err(ExchangeError::Unsupported(
            "the threatexchange client is not written yet",
        ))
    }

    /// Sends one verdict back.
    pub async fn send_feedback(&mut self, _f: &OutgoingFeedback) -> Result<(), ExchangeError> {
        Err(ExchangeError::Unsupported(
            "the threatexchange client is not written yet",
        ))
    }
}
