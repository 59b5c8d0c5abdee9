//! Operations' errors as gRPC statuses: the code says what kind of
//! failure (a caller's mistake, a state, a refusal, the node's own
//! failure), the message says it in words.

use tonic::Status;

/// A failed operation as a gRPC status: the code says what kind of
/// failure, the message says it in words. Internal failures are logged
/// here, once.
pub fn ops_status(e: crate::ops::OpsError) -> Status {
    use crate::ops::OpsError as E;
    use crate::peers::PeerError;
    use crate::store::{StoreError, VettingRefusal};
    let message = e.to_string();
    match e {
        E::Invalid(_) | E::Name(_) => Status::invalid_argument(message),
        E::Precondition(_) => Status::failed_precondition(message),
        E::Store(StoreError::UnknownEntry(_) | StoreError::UnknownSet(_)) => {
            Status::not_found(message)
        }
        E::Store(StoreError::Name(_)) => Status::invalid_argument(message),
        E::Store(StoreError::Vetting(refusal)) => match refusal {
            VettingRefusal::OwnEntry(_) => Status::permission_denied(message),
            VettingRefusal::AlreadyConfirmed { .. }
            | VettingRefusal::AlreadyPending(_)
            | VettingRefusal::Exists(_) => Status::already_exists(message),
            VettingRefusal::NotPending(_) => Status::not_found(message),
            VettingRefusal::NotRequired(_) | VettingRefusal::Unvetted { .. } => {
                Status::failed_precondition(message)
            }
            VettingRefusal::TooFew(_) => Status::invalid_argument(message),
        },
        E::Store(StoreError::Received { .. }) => Status::failed_precondition(message),
        E::Store(StoreError::SetExists(_)) => Status::already_exists(message),
        E::Peer(PeerError::Unknown(_)) => Status::not_found(message),
        E::Peer(PeerError::Revoked(_) | PeerError::Conflict(_)) => {
            Status::failed_precondition(message)
        }
        E::Peer(PeerError::Invalid(_)) => Status::invalid_argument(message),
        E::Federation(crate::federation::FederationError::Refused(_)) => {
            Status::failed_precondition(message)
        }
        E::Federation(crate::federation::FederationError::Peers(PeerError::Unknown(_))) => {
            Status::not_found(message)
        }
        other => {
            tracing::error!(error = %other, "admin call failed");
            Status::internal(format!("the node failed: {message}"))
        }
    }
}
