//! The connections of a cluster as the report shows them: each direction (leg) of a
//! TLS connection with the certificate presented, the CA file that verifies it and the
//! verdict, and whether the connection is mutual or one-way.

use serde::Serialize;

use super::tls::{self, Failure};

/// The verdict of one direction of a connection.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", content = "reason", rename_all = "kebab-case")]
pub enum Verdict {
    Verified,
    /// Verified by signature and validity only, for the reason given.
    VerifiedSignatureOnly(String),
    Failed(String),
    /// The receiving side does not verify this certificate at all.
    NotVerified(String),
    /// The tree lacks a file needed to decide.
    Unknown(String),
}

/// One direction: one side presents a certificate, the other verifies it.
#[derive(Debug, Clone, Serialize)]
pub struct Leg {
    pub direction: String,
    pub presented: Option<String>,
    pub ca_file: Option<String>,
    pub verifier: String,
    #[serde(flatten)]
    pub verdict: Verdict,
}

impl Leg {
    pub fn new(
        direction: &str,
        presented: Option<&str>,
        ca_file: Option<&str>,
        verifier: &str,
    ) -> Leg {
        Leg {
            direction: direction.to_string(),
            presented: presented.map(str::to_string),
            ca_file: ca_file.map(str::to_string),
            verifier: verifier.to_string(),
            verdict: Verdict::Unknown(String::new()),
        }
    }

    pub fn skipped(mut self, reason: &str) -> Leg {
        self.verdict = Verdict::Unknown(reason.to_string());
        self
    }

    pub fn unverified(mut self, reason: &str) -> Leg {
        self.verdict = Verdict::NotVerified(reason.to_string());
        self
    }

    pub fn with_result(mut self, result: Result<tls::Verified, Failure>) -> Leg {
        self.verdict = match result {
            Ok(tls::Verified::Chain) => Verdict::Verified,
            Ok(tls::Verified::SignatureOnly) => Verdict::VerifiedSignatureOnly(
                "an X.509 v1 certificate, which rustls-webpki rejects and Go accepts, so only its \
                 signature and validity were checked"
                    .into(),
            ),
            Err(failure) => Verdict::Failed(failure.describe()),
        };
        self
    }
}

/// The sides of a connection that verify their peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Mutual,
    OneWay,
    /// One side's verification is configured outside the tree.
    PartlyOutsideTree,
    /// The tree lacks a file needed to tell.
    Undetermined,
}

impl Mode {
    pub fn describe(self) -> &'static str {
        match self {
            Mode::Mutual => "mutual TLS",
            Mode::OneWay => "one-way TLS",
            Mode::PartlyOutsideTree => "TLS, one side configured outside this tree",
            Mode::Undetermined => "TLS, not determined: the tree lacks files of this connection",
        }
    }
}

/// One connection between two components.
#[derive(Debug, Clone, Serialize)]
pub struct Connection {
    pub name: String,
    pub mode: Mode,
    pub legs: Vec<Leg>,
    /// The setting that makes a one-way connection mutual.
    pub advice: Option<String>,
}

impl Connection {
    pub fn new(name: String) -> Connection {
        Connection {
            name,
            mode: Mode::Mutual,
            legs: Vec::new(),
            advice: None,
        }
    }

    /// Adds a leg; a leg that cannot be decided makes a mutual connection undetermined.
    pub fn push_leg(&mut self, leg: Leg) {
        if matches!(leg.verdict, Verdict::Unknown(_)) && self.mode == Mode::Mutual {
            self.mode = Mode::Undetermined;
        }
        self.legs.push(leg);
    }

    /// Marks the connection one-way, with the setting that makes it mutual.
    pub fn one_way(&mut self, advice: String) {
        self.mode = Mode::OneWay;
        self.advice = Some(advice);
    }
}
