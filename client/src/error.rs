//! The SDK's error type: what went wrong, classified so callers (and
//! `lexumctl`'s exit codes) can tell a user mistake from an unavailable
//! cluster.

use std::time::Duration;
use tonic::Code;

/// Metadata key carrying a diagnostic code (`E011`, `E002`, ...) on errors.
pub const CODE_METADATA_KEY: &str = "lexum-code";

/// Errors returned by [`crate::Client`] and [`crate::Worker`].
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// An endpoint or TLS setting could not be used.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The cluster refused the request because of its content: a compile
    /// error, an invariant violation (E011), an unknown name (E002), a type
    /// mismatch (E003). Nothing was committed.
    #[error("{message}")]
    Rejected {
        /// Diagnostic code, when the node sent one.
        code: Option<String>,
        /// The node's message (rendered diagnostics for compile errors).
        message: String,
    },
    /// Something named in the request does not exist (unknown domain, member).
    #[error("{message}")]
    NotFound {
        /// Diagnostic code, when the node sent one.
        code: Option<String>,
        /// The node's message.
        message: String,
    },
    /// The token was missing or wrong.
    #[error("not authenticated: {0}")]
    Unauthenticated(String),
    /// The token is known but its role may not make this call
    /// (docs/operations.md, Security, has the table).
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// No node answered, or no quorum, within the deadline.
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
    /// Any other gRPC failure.
    #[error("request failed: {0}")]
    Rpc(String),
}

impl ClientError {
    /// Whether the request itself was at fault (bad program, unknown name,
    /// wrong type, rejected mutation, bad token or configuration).
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            ClientError::Config(_)
                | ClientError::Rejected { .. }
                | ClientError::NotFound { .. }
                | ClientError::Unauthenticated(_)
                | ClientError::PermissionDenied(_)
        )
    }

    /// Whether the cluster could not be reached or had no quorum.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, ClientError::Unavailable(_))
    }

    /// The diagnostic code (`E011`, ...) when the node sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Rejected { code, .. } | ClientError::NotFound { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// Classifies a final gRPC status (after retries and redirects).
    pub fn from_status(status: &tonic::Status) -> ClientError {
        let code = status
            .metadata()
            .get(CODE_METADATA_KEY)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or_else(|| leading_code(status.message()));
        let message = status.message().trim_end().to_string();
        match status.code() {
            Code::InvalidArgument | Code::OutOfRange | Code::AlreadyExists => ClientError::Rejected { code, message },
            Code::NotFound => ClientError::NotFound { code, message },
            Code::Unauthenticated => ClientError::Unauthenticated(message),
            Code::PermissionDenied => ClientError::PermissionDenied(message),
            Code::FailedPrecondition if !message.starts_with("not the leader") => {
                ClientError::Rejected { code, message }
            }
            Code::Unavailable | Code::DeadlineExceeded | Code::FailedPrecondition | Code::Cancelled => {
                ClientError::Unavailable(if message.is_empty() { format!("{:?}", status.code()) } else { message })
            }
            other => ClientError::Rpc(format!("{other:?}: {message}")),
        }
    }
}

/// `E011` from `"E011: ..."`.
fn leading_code(message: &str) -> Option<String> {
    let head = message.get(..4)?;
    let mut chars = head.chars();
    let first = chars.next()?;
    ((first == 'E' || first == 'W') && chars.all(|c| c.is_ascii_digit()) && message[4..].starts_with(':'))
        .then(|| head.to_string())
}

/// Whether a status is worth retrying on another node after a pause.
pub(crate) fn is_transient(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Aborted | Code::Unknown
    ) || (status.code() == Code::FailedPrecondition && status.message().starts_with("not the leader"))
        || retry_after(status).is_some()
}

/// Longest wait a node's hint may ask for (a longer hint is cut to this).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// How long a node over one of its `[limits]` asked the caller to wait: a
/// RESOURCE_EXHAUSTED status with `retry-after-ms` metadata. The node
/// refused the call before running it, so trying again is always safe.
pub(crate) fn retry_after(status: &tonic::Status) -> Option<Duration> {
    if status.code() != Code::ResourceExhausted {
        return None;
    }
    let millis: u64 =
        status.metadata().get(lexum_proto::RETRY_AFTER_METADATA_KEY)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_millis(millis).min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(code: Code, message: &str, user: bool, unavailable: bool, diag: Option<&str>) {
        let err = ClientError::from_status(&tonic::Status::new(code, message));
        assert_eq!(err.is_user_error(), user, "{err:?}");
        assert_eq!(err.is_unavailable(), unavailable, "{err:?}");
        assert_eq!(err.code(), diag, "{err:?}");
    }

    #[test]
    fn a_limit_with_a_hint_is_retried_after_it() {
        let mut status = tonic::Status::resource_exhausted("over the write rate");
        assert_eq!(retry_after(&status), None, "no hint, no retry");
        assert!(!is_transient(&status));
        status.metadata_mut().insert(lexum_proto::RETRY_AFTER_METADATA_KEY, "250".parse().expect("ascii"));
        assert_eq!(retry_after(&status), Some(Duration::from_millis(250)));
        assert!(is_transient(&status));
        status.metadata_mut().insert(lexum_proto::RETRY_AFTER_METADATA_KEY, "99999999".parse().expect("ascii"));
        assert_eq!(retry_after(&status), Some(MAX_RETRY_AFTER));
        let mut other = tonic::Status::invalid_argument("bad");
        other.metadata_mut().insert(lexum_proto::RETRY_AFTER_METADATA_KEY, "5".parse().expect("ascii"));
        assert_eq!(retry_after(&other), None);
    }

    #[test]
    fn rejection_is_user_error() {
        check(Code::InvalidArgument, "E011: invariant Bounded would be violated", true, false, Some("E011"));
    }

    #[test]
    fn unknown_domain_is_user_error() {
        check(Code::NotFound, "E002: unknown domain `Nope`", true, false, Some("E002"));
    }

    #[test]
    fn no_quorum_is_unavailable() {
        check(Code::Unavailable, "no quorum", false, true, None);
    }

    #[test]
    fn bad_token_is_user_error() {
        check(Code::Unauthenticated, "invalid token", true, false, None);
    }

    #[test]
    fn wrong_role_is_user_error() {
        let err = ClientError::from_status(&tonic::Status::permission_denied("token `viewer` has role read"));
        assert!(matches!(err, ClientError::PermissionDenied(_)), "{err:?}");
        check(Code::PermissionDenied, "token `viewer` has role read", true, false, None);
    }

    #[test]
    fn non_code_prefix_is_not_a_code() {
        check(Code::InvalidArgument, "Error: something", true, false, None);
    }
}
