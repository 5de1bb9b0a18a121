//! Documented exit statuses, one per outcome class, shared by every subcommand.

use std::process::ExitCode;

use crate::proto::verdict::Failure;

/// How a run ended.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Exit {
    /// The host answered and every check passed.
    Success = 0,
    /// The host answered but at least one check failed.
    ChecksFailed = 1,
    /// The command line or a configuration file was wrong; nothing was sent. For `inspect`:
    /// the file is not a capture, or it holds no KMS traffic.
    Usage = 2,
    /// No connection: refused, unreachable, timed out, or no host found.
    Connection = 3,
    /// The RPC layer failed: a fault PDU, a bind rejection, or undecodable replies.
    Rpc = 4,
    /// The host refused the activation with an HRESULT.
    Refused = 5,
    /// An I/O error on a local file (state, report, grab file).
    LocalIo = 6,
    /// Interrupted by Ctrl-C (128 + SIGINT).
    Interrupted = 130,
}

impl Exit {
    /// The status's name as reports print it (and as JSON spells it).
    pub fn name(self) -> &'static str {
        match self {
            Exit::Success => "success",
            Exit::ChecksFailed => "checks_failed",
            Exit::Usage => "usage",
            Exit::Connection => "connection",
            Exit::Rpc => "rpc",
            Exit::Refused => "refused",
            Exit::LocalIo => "local_io",
            Exit::Interrupted => "interrupted",
        }
    }

    /// The most severe of two outcomes (a run reports its worst request).
    #[must_use]
    pub fn worst(self, other: Exit) -> Exit {
        self.max(other)
    }

    /// The status a failure class calls for: a failed check 1, connection classes 3, RPC
    /// faults and undecodable replies 4, HRESULT refusals 5.
    pub fn of_failure(failure: Failure) -> Exit {
        match failure {
            Failure::HResult(_) => Exit::Refused,
            Failure::Fault(_)
            | Failure::Protocol
            | Failure::Undecodable
            | Failure::Unverifiable => Exit::Rpc,
            Failure::Check(_) => Exit::ChecksFailed,
            Failure::Refused
            | Failure::Timeout
            | Failure::Reset
            | Failure::Closed
            | Failure::Io => Exit::Connection,
        }
    }

    /// The status of a whole run: 130 when interrupted, else its worst failure class, else 1
    /// when anything failed or when the run `validated_nothing` it set out to (a run that
    /// proved nothing never passes), else 0.
    pub fn of_run(
        interrupted: bool,
        validated_nothing: bool,
        failed: u64,
        failures: impl IntoIterator<Item = Failure>,
    ) -> Exit {
        if interrupted {
            return Exit::Interrupted;
        }
        let worst = failures
            .into_iter()
            .map(Exit::of_failure)
            .fold(Exit::Success, Exit::worst);
        if worst == Exit::Success && (failed > 0 || validated_nothing) {
            Exit::ChecksFailed
        } else {
            worst
        }
    }
}

impl core::fmt::Display for Exit {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_json_names() {
        for e in [
            Exit::Success,
            Exit::ChecksFailed,
            Exit::Usage,
            Exit::Connection,
            Exit::Rpc,
            Exit::Refused,
            Exit::LocalIo,
            Exit::Interrupted,
        ] {
            assert_eq!(
                serde_json::to_string(&e).expect("serializes"),
                format!("\"{e}\"")
            );
        }
    }

    #[test]
    fn test_run_that_validated_nothing_fails() {
        assert_eq!(Exit::of_run(false, false, 0, []), Exit::Success);
        assert_eq!(Exit::of_run(false, true, 0, []), Exit::ChecksFailed);
        assert_eq!(
            Exit::of_run(false, true, 3, [Failure::Timeout]),
            Exit::Connection
        );
        assert_eq!(Exit::of_run(true, true, 0, []), Exit::Interrupted);
    }
}
