use std::fmt;

/// Everything that can stop a policy from loading or compiling.
///
/// Every variant is an operator's fault (a policy file, model, test cases or request file the
/// gateway or the CLI was given), never a caller's: a request the policy refuses is a [`crate::Decision`] with a
/// [`crate::DenyReason`], not an error. A gateway that meets one of these on reload keeps the
/// engine it already has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The file is not TOML, or not the shape of a policy file.
    #[error("policy file is not valid at line {line}, column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    /// The file parses, but says something unsafe or meaningless; every problem is listed so an
    /// operator fixes them in one pass.
    #[error("policy has {} problem{}: {}", problems.len(), plural(problems.len()), Problems(problems))]
    Invalid { problems: Vec<Problem> },
    /// The casbin model would not enforce deny-overrides-allow.
    #[error("casbin model is unsafe: {reason}")]
    UnsafeModel { reason: String },
    /// The casbin model cannot be read, or does not have the columns the compiler writes.
    #[error("casbin model is not usable: {reason}")]
    Model { reason: String },
    /// casbin refused to build an enforcer from compiled lines.
    #[error("casbin could not load the compiled policy: {message}")]
    Casbin { message: String },
    /// A file of test cases, or a request to explain, is not valid.
    #[error("{}", document(what, *line, message))]
    Document {
        /// `test cases` or `request`.
        what: &'static str,
        line: Option<usize>,
        message: String,
    },
    /// A file could not be read.
    #[error("cannot read `{path}`: {message}")]
    Read { path: String, message: String },
}

/// One thing wrong with a policy file, located well enough for an operator to find it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What the problem is in, for example ``agreement `met-hackney-children` ``.
    pub subject: String,
    /// The line the entry starts on, when the problem came from a file.
    pub line: Option<usize>,
    pub message: String,
}

struct Problems<'a>(&'a [Problem]);

impl PolicyError {
    /// The listed problems, for callers that show them one per line.
    pub fn problems(&self) -> &[Problem] {
        match self {
            Self::Invalid { problems } => problems,
            _ => &[],
        }
    }
}

impl Problem {
    pub(crate) fn new(subject: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            line: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{} (line {line}): {}", self.subject, self.message),
            None => write!(f, "{}: {}", self.subject, self.message),
        }
    }
}

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

fn document(what: &str, line: Option<usize>, message: &str) -> String {
    let verb = if what.ends_with('s') { "are" } else { "is" };
    match line {
        Some(line) => format!("{what} {verb} not valid at line {line}: {message}"),
        None => format!("{what} {verb} not valid: {message}"),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
