//! The partnership policy file: which members exist, which are blocs and which
//! states belong to them, whether a member is active, and which token issuers
//! each member trusts. The same file drives `orex up`, the tests and the
//! Kubernetes ConfigMaps.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why a policy file was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("cannot read policy file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for the policy schema.
    #[error("policy file {path} is invalid: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said (names the field).
        message: String,
    },
    /// The file parsed but breaks a rule of the model.
    #[error("policy: {0}")]
    Invalid(String),
}

/// Whether a member is a sovereign state or a bloc of states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberKind {
    /// A state, coded by ISO 3166-1 alpha-2 (`US`, `DE`).
    State,
    /// A bloc (`EU`) that holds the mandate for its member states.
    Bloc,
}

/// Whether a member currently takes part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MemberStatus {
    /// Takes part: its principals are served.
    #[default]
    Active,
    /// Suspended: its principals are refused everywhere and see nothing.
    Suspended,
}

/// A JWS algorithm a member's issuer may sign with (the allow-list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum TokenAlgorithm {
    /// Ed25519 (recommended: fastest to verify).
    EdDSA,
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// ECDSA P-384 with SHA-384.
    ES384,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
}

impl TokenAlgorithm {
    /// The key type the algorithm needs.
    pub fn family(self) -> &'static str {
        match self {
            TokenAlgorithm::EdDSA => "Ed25519",
            TokenAlgorithm::ES256 => "EC P-256",
            TokenAlgorithm::ES384 => "EC P-384",
            TokenAlgorithm::PS256 | TokenAlgorithm::RS256 => "RSA",
        }
    }
}

/// A token issuer trusted for exactly one member.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The `iss` claim this issuer puts in its tokens.
    pub issuer: String,
    /// PEM file with the issuer's public key, relative to the policy file.
    pub public_key: PathBuf,
    /// Algorithms accepted from this issuer; anything else is refused.
    pub algorithms: Vec<TokenAlgorithm>,
    /// The longest lifetime (`exp` − `iat`, seconds) a token of this issuer
    /// may have; longer ones are refused, so a leaked token cannot be good
    /// for years. Default [`DEFAULT_MAX_TOKEN_LIFETIME_SECONDS`] (24 h).
    #[serde(default = "default_max_token_lifetime")]
    pub max_token_lifetime_seconds: u64,
}

/// The default longest token lifetime: 24 hours.
pub const DEFAULT_MAX_TOKEN_LIFETIME_SECONDS: u64 = 24 * 60 * 60;

fn default_max_token_lifetime() -> u64 {
    DEFAULT_MAX_TOKEN_LIFETIME_SECONDS
}

/// One member as written in the policy file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberFile {
    /// Member code: ISO 3166-1 alpha-2 for states, 2–8 capital letters for blocs.
    code: String,
    /// Human-readable name.
    name: String,
    /// `state` or `bloc`.
    kind: MemberKind,
    /// For a state: the bloc it belongs to, if any.
    #[serde(default)]
    bloc: Option<String>,
    /// `active` (default) or `suspended`.
    #[serde(default)]
    status: MemberStatus,
    /// True for the partnership's founding parties (used by emergency activation rules).
    #[serde(default)]
    founding: bool,
    /// Token issuers trusted for this member's principals.
    #[serde(default)]
    issuers: Vec<IssuerConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    /// Every member of the partnership.
    members: Vec<MemberFile>,
    /// Role name → methods it may call (`package.Service/Method` or `package.Service/*`).
    #[serde(default)]
    roles: BTreeMap<String, Vec<String>>,
    /// Per-member request rates.
    #[serde(default)]
    rate_limits: RateLimitsFile,
    /// Who audits what.
    #[serde(default)]
    audit: AuditFile,
}

/// A token bucket: `burst` calls at once, refilled at `per_minute`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Sustained calls per minute (at least 1).
    pub per_minute: u32,
    /// Calls allowed at once after a quiet period (at least 1).
    pub burst: u32,
}

/// Rates per class of method; an unset class is unlimited.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateClasses {
    /// Gets, lists and queries.
    pub read: Option<Rate>,
    /// Publishes, amendments and every other change.
    pub write: Option<Rate>,
    /// Opening a server stream.
    pub stream: Option<Rate>,
    /// Most server streams one member may hold open at once (unset: no cap).
    pub open_streams: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitsFile {
    /// Rates for every member without its own entry.
    #[serde(default)]
    default: RateClasses,
    /// Member code → its own rates (classes it leaves unset fall back to `default`).
    #[serde(default)]
    members: BTreeMap<String, RateClasses>,
    /// Rates for callers whose certificate names no member of the policy
    /// (workload certificates, certificates without a single orex identity,
    /// unknown members), per certificate. Classes left unset get
    /// [`UNIDENTIFIED_RATE`], never "unlimited": such a caller can never be
    /// served, so it must not be able to fill the access log either.
    #[serde(default)]
    unidentified: RateClasses,
}

/// The rate of each class for callers without a member identity, unless
/// `[rate_limits.unidentified]` says otherwise: a client misconfigured with
/// the wrong certificate still sees its errors, a flood is cut short.
pub const UNIDENTIFIED_RATE: Rate = Rate {
    per_minute: 60,
    burst: 10,
};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditFile {
    /// Principals (`MEMBER/subject`) who audit the whole partnership; any
    /// other auditor sees only records about its own member.
    #[serde(default)]
    partnership_auditors: Vec<String>,
}

/// What kind of call a method is, for rate limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MethodClass {
    /// Reads.
    Read,
    /// Changes.
    Write,
    /// Server streams.
    Stream,
}

impl MethodClass {
    /// `read`, `write` or `stream`, as the policy file names the classes.
    pub fn as_str(self) -> &'static str {
        match self {
            MethodClass::Read => "read",
            MethodClass::Write => "write",
            MethodClass::Stream => "stream",
        }
    }
}

/// Validated rate limits.
#[derive(Debug, Clone, Default)]
pub struct RateLimits {
    default: RateClasses,
    members: BTreeMap<String, RateClasses>,
    unidentified: RateClasses,
}

impl RateLimits {
    /// The rate for `member` and `class`; `None` is unlimited.
    pub fn rate(&self, member: &str, class: MethodClass) -> Option<Rate> {
        let pick = |c: &RateClasses| match class {
            MethodClass::Read => c.read,
            MethodClass::Write => c.write,
            MethodClass::Stream => c.stream,
        };
        self.members
            .get(member)
            .and_then(pick)
            .or_else(|| pick(&self.default))
    }

    /// The rate for one certificate that names no member of the policy;
    /// never unlimited ([`UNIDENTIFIED_RATE`] for a class left unset).
    pub fn unidentified_rate(&self, class: MethodClass) -> Rate {
        match class {
            MethodClass::Read => self.unidentified.read,
            MethodClass::Write => self.unidentified.write,
            MethodClass::Stream => self.unidentified.stream,
        }
        .unwrap_or(UNIDENTIFIED_RATE)
    }

    /// Most streams `member` may hold open at once; `None` is no cap.
    pub fn open_streams(&self, member: &str) -> Option<u32> {
        self.members
            .get(member)
            .and_then(|c| c.open_streams)
            .or(self.default.open_streams)
    }
}

/// A member of the partnership, after validation.
#[derive(Debug, Clone)]
pub struct Member {
    /// Member code (`US`, `EU`, `DE`).
    pub code: String,
    /// Human-readable name.
    pub name: String,
    /// State or bloc.
    pub kind: MemberKind,
    /// The bloc this state belongs to, if any.
    pub bloc: Option<String>,
    /// Whether the member takes part now.
    pub status: MemberStatus,
    /// Founding party of the partnership.
    pub founding: bool,
    /// Trusted token issuers, with key paths resolved against the policy file.
    pub issuers: Vec<IssuerConfig>,
}

impl Member {
    /// True when the member is not suspended.
    pub fn is_active(&self) -> bool {
        self.status == MemberStatus::Active
    }
}

/// The validated partnership: every member by code.
#[derive(Debug, Clone)]
pub struct Partnership {
    members: BTreeMap<String, Member>,
    permissions: crate::permissions::Permissions,
    rate_limits: RateLimits,
    partnership_auditors: Vec<crate::PrincipalRef>,
}

impl Partnership {
    /// Reads and validates a policy file. Relative key paths are resolved
    /// against the file's folder.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base).map_err(|e| match e {
            PolicyError::Parse { message, .. } => PolicyError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates the bytes of the policy file at `path` (read by
    /// the caller, once); relative key paths resolve against its folder.
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Self, PolicyError> {
        let text = std::str::from_utf8(bytes).map_err(|_| PolicyError::Parse {
            path: path.to_owned(),
            message: "not UTF-8".into(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(text, base).map_err(|e| match e {
            PolicyError::Parse { message, .. } => PolicyError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates policy text; `base` resolves relative key paths.
    pub fn parse(text: &str, base: &Path) -> Result<Self, PolicyError> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| PolicyError::Parse {
            path: PathBuf::from("<text>"),
            message: e.to_string(),
        })?;
        let mut members = BTreeMap::new();
        for m in file.members {
            if !is_member_code(&m.code, m.kind) {
                return Err(PolicyError::Invalid(format!(
                    "member code {:?} is not valid for a {:?} (states: ISO 3166-1 alpha-2 like \"US\"; blocs: 2-8 capital letters)",
                    m.code, m.kind
                )));
            }
            if m.kind == MemberKind::Bloc && m.bloc.is_some() {
                return Err(PolicyError::Invalid(format!(
                    "member {}: a bloc cannot belong to another bloc",
                    m.code
                )));
            }
            // One issuer per member: a principal is (member, subject), and two
            // issuers could mint the same subject for different people.
            if m.issuers.len() > 1 {
                return Err(PolicyError::Invalid(format!(
                    "member {}: at most one token issuer per member (rotate keys within it)",
                    m.code
                )));
            }
            for issuer in &m.issuers {
                if issuer.max_token_lifetime_seconds == 0 {
                    return Err(PolicyError::Invalid(format!(
                        "member {}: issuer {:?} max_token_lifetime_seconds must be at least 1",
                        m.code, issuer.issuer
                    )));
                }
                let Some(first) = issuer.algorithms.first() else {
                    return Err(PolicyError::Invalid(format!(
                        "member {}: issuer {:?} allows no algorithm",
                        m.code, issuer.issuer
                    )));
                };
                // One key verifies one family of algorithms.
                if issuer
                    .algorithms
                    .iter()
                    .any(|a| a.family() != first.family())
                {
                    return Err(PolicyError::Invalid(format!(
                        "member {}: issuer {:?} mixes algorithm families; one key serves one family",
                        m.code, issuer.issuer
                    )));
                }
            }
            let issuers = m
                .issuers
                .into_iter()
                .map(|mut i| {
                    i.public_key = base.join(&i.public_key);
                    i
                })
                .collect();
            let member = Member {
                code: m.code.clone(),
                name: m.name,
                kind: m.kind,
                bloc: m.bloc,
                status: m.status,
                founding: m.founding,
                issuers,
            };
            if members.insert(m.code.clone(), member).is_some() {
                return Err(PolicyError::Invalid(format!(
                    "member {} is declared twice",
                    m.code
                )));
            }
        }
        if members.is_empty() {
            return Err(PolicyError::Invalid("no members declared".into()));
        }
        for m in members.values() {
            if let Some(bloc) = &m.bloc {
                match members.get(bloc) {
                    Some(b) if b.kind == MemberKind::Bloc => {}
                    Some(_) => {
                        return Err(PolicyError::Invalid(format!(
                            "member {}: {} is not a bloc",
                            m.code, bloc
                        )));
                    }
                    None => {
                        return Err(PolicyError::Invalid(format!(
                            "member {}: unknown bloc {}",
                            m.code, bloc
                        )));
                    }
                }
            }
        }
        // An issuer string trusted by two members would let one member's
        // issuer mint tokens accepted for the other.
        let mut seen = BTreeMap::new();
        for m in members.values() {
            for i in &m.issuers {
                if let Some(other) = seen.insert(i.issuer.clone(), m.code.clone()) {
                    return Err(PolicyError::Invalid(format!(
                        "issuer {:?} is trusted by both {} and {}; each issuer serves one member",
                        i.issuer, other, m.code
                    )));
                }
            }
        }
        let permissions = crate::permissions::Permissions::from_table(&file.roles)?;
        let check_rate = |where_: &str, r: &Option<Rate>| match r {
            Some(r) if r.per_minute == 0 || r.burst == 0 => Err(PolicyError::Invalid(format!(
                "{where_}: per_minute and burst must be at least 1"
            ))),
            _ => Ok(()),
        };
        let all = [
            (
                "[rate_limits.default]".to_string(),
                &file.rate_limits.default,
            ),
            (
                "[rate_limits.unidentified]".to_string(),
                &file.rate_limits.unidentified,
            ),
        ]
        .into_iter()
        .chain(
            file.rate_limits
                .members
                .iter()
                .map(|(m, c)| (format!("[rate_limits.members.{m}]"), c)),
        );
        for (where_, classes) in all {
            check_rate(&where_, &classes.read)?;
            check_rate(&where_, &classes.write)?;
            check_rate(&where_, &classes.stream)?;
            if classes.open_streams == Some(0) {
                return Err(PolicyError::Invalid(format!(
                    "{where_}: open_streams must be at least 1 (leave it out for no cap)"
                )));
            }
        }
        for m in file.rate_limits.members.keys() {
            if !members.contains_key(m) {
                return Err(PolicyError::Invalid(format!(
                    "[rate_limits.members]: unknown member {m}"
                )));
            }
        }
        let mut partnership_auditors = Vec::new();
        for p in &file.audit.partnership_auditors {
            let (member, subject) = p.split_once('/').ok_or_else(|| {
                PolicyError::Invalid(format!(
                    "[audit].partnership_auditors: {p:?} is not MEMBER/subject"
                ))
            })?;
            if !members.contains_key(member) || subject.is_empty() {
                return Err(PolicyError::Invalid(format!(
                    "[audit].partnership_auditors: unknown member in {p:?}"
                )));
            }
            partnership_auditors.push(crate::PrincipalRef {
                member: member.to_owned(),
                subject: subject.to_owned(),
            });
        }
        Ok(Self {
            members,
            permissions,
            rate_limits: RateLimits {
                default: file.rate_limits.default,
                members: file.rate_limits.members,
                unidentified: file.rate_limits.unidentified,
            },
            partnership_auditors,
        })
    }

    /// Which roles may call which methods.
    pub fn permissions(&self) -> &crate::permissions::Permissions {
        &self.permissions
    }

    /// Per-member request rates.
    pub fn rate_limits(&self) -> &RateLimits {
        &self.rate_limits
    }

    /// True when `who` audits the whole partnership (not just its member).
    pub fn is_partnership_auditor(&self, who: &crate::Principal) -> bool {
        self.partnership_auditors.iter().any(|p| who.is(p))
    }

    /// The member with this code, if configured.
    pub fn member(&self, code: &str) -> Option<&Member> {
        self.members.get(code)
    }

    /// Every member, ordered by code.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// True when `code` is a configured, active member.
    pub fn is_active_member(&self, code: &str) -> bool {
        self.member(code).is_some_and(Member::is_active)
    }

    /// The bloc a state belongs to, if any.
    pub fn bloc_of(&self, code: &str) -> Option<&str> {
        self.member(code).and_then(|m| m.bloc.as_deref())
    }

    /// True when `country` is a partnership state, either a member in its own
    /// right or a state of a member bloc. Used for the no-export-ban rule.
    pub fn is_partner_country(&self, country: &str) -> bool {
        self.member(country)
            .is_some_and(|m| m.kind == MemberKind::State && m.is_active())
    }
}

fn is_member_code(code: &str, kind: MemberKind) -> bool {
    let upper = code.bytes().all(|b| b.is_ascii_uppercase());
    match kind {
        MemberKind::State => code.len() == 2 && upper,
        MemberKind::Bloc => (2..=8).contains(&code.len()) && upper,
    }
}

/// True when `code` has the shape of an ISO 3166-1 alpha-2 country code.
pub fn is_country_code(code: &str) -> bool {
    code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
        [[members]]
        code = "US"
        name = "United States"
        kind = "state"
        founding = true
        [[members]]
        code = "EU"
        name = "European Union"
        kind = "bloc"
        founding = true
        [[members]]
        code = "DE"
        name = "Germany"
        kind = "state"
        bloc = "EU"
    "#;

    #[test]
    fn parses_members_and_blocs() {
        let p = Partnership::parse(POLICY, Path::new(".")).unwrap();
        assert_eq!(p.bloc_of("DE"), Some("EU"));
        assert!(p.is_partner_country("DE"));
        assert!(!p.is_partner_country("EU"));
        assert!(!p.is_partner_country("CN"));
    }

    #[test]
    fn callers_without_a_member_are_never_unlimited() {
        let p = Partnership::parse(POLICY, Path::new(".")).unwrap();
        let limits = p.rate_limits();
        assert_eq!(
            limits.rate("US", MethodClass::Read),
            None,
            "unset: unlimited"
        );
        assert_eq!(
            limits.unidentified_rate(MethodClass::Read),
            UNIDENTIFIED_RATE
        );
        let text = format!(
            "{POLICY}\n[rate_limits.unidentified]\nwrite = {{ per_minute = 6, burst = 2 }}\n"
        );
        let p = Partnership::parse(&text, Path::new(".")).unwrap();
        let limits = p.rate_limits();
        assert_eq!(
            limits.unidentified_rate(MethodClass::Write),
            Rate {
                per_minute: 6,
                burst: 2
            }
        );
        assert_eq!(
            limits.unidentified_rate(MethodClass::Stream),
            UNIDENTIFIED_RATE,
            "a class left unset keeps the built-in rate"
        );
        let text = format!(
            "{POLICY}\n[rate_limits.unidentified]\nread = {{ per_minute = 0, burst = 2 }}\n"
        );
        let err = Partnership::parse(&text, Path::new(".")).unwrap_err();
        assert!(
            err.to_string().contains("[rate_limits.unidentified]"),
            "{err}"
        );
    }

    #[test]
    fn unknown_bloc_is_refused_by_name() {
        let text = POLICY.replace("bloc = \"EU\"", "bloc = \"XX\"");
        let err = Partnership::parse(&text, Path::new(".")).unwrap_err();
        assert!(err.to_string().contains("unknown bloc XX"), "{err}");
    }

    #[test]
    fn unknown_field_is_refused_by_name() {
        let text = format!("{POLICY}\ncolour = \"red\"\n");
        let err = Partnership::parse(&text, Path::new(".")).unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
    }

    #[test]
    fn shared_issuer_is_refused() {
        let text = r#"
            [[members]]
            code = "US"
            name = "United States"
            kind = "state"
            [[members.issuers]]
            issuer = "https://id.example"
            public_key = "us.pem"
            algorithms = ["EdDSA"]
            [[members]]
            code = "JP"
            name = "Japan"
            kind = "state"
            [[members.issuers]]
            issuer = "https://id.example"
            public_key = "jp.pem"
            algorithms = ["EdDSA"]
        "#;
        let err = Partnership::parse(text, Path::new(".")).unwrap_err();
        assert!(err.to_string().contains("both JP and US"), "{err}");
    }

    #[test]
    fn token_lifetime_defaults_to_a_day_and_zero_is_refused() {
        let text = r#"
            [[members]]
            code = "US"
            name = "United States"
            kind = "state"
            [[members.issuers]]
            issuer = "https://id.example"
            public_key = "us.pem"
            algorithms = ["EdDSA"]
        "#;
        let p = Partnership::parse(text, Path::new(".")).unwrap();
        assert_eq!(
            p.member("US").unwrap().issuers[0].max_token_lifetime_seconds,
            DEFAULT_MAX_TOKEN_LIFETIME_SECONDS
        );
        let zero = text.replace(
            "algorithms = [\"EdDSA\"]",
            "algorithms = [\"EdDSA\"]\nmax_token_lifetime_seconds = 0",
        );
        let err = Partnership::parse(&zero, Path::new(".")).unwrap_err();
        assert!(
            err.to_string().contains("max_token_lifetime_seconds"),
            "{err}"
        );
    }
}
