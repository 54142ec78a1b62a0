//! Reading what the CLI is given, always bounded: regular files, stdin (`-`), pipes and devices
//! alike are read through one limit, so `-f /dev/zero` or a 50 MB stream is refused after the
//! limit, not read whole; YAML is checked for nesting before the parser sees it.

use std::io::Read;
use std::path::Path;

/// Largest manifest file or stream read (a GitOps repository's biggest generated bundle fits).
pub const MAX_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;
/// Largest payload, key or signature read.
pub const MAX_SMALL_BYTES: u64 = 1024 * 1024;
/// Deepest YAML or JSON nesting accepted (the YAML parser's own recursion limit is 128; deeper
/// flow nesting makes it quadratic, so it is refused before parsing).
pub const MAX_DEPTH: usize = 128;

/// Why an input could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// Opening or reading failed.
    #[error("{path}: {source}")]
    Io {
        /// The path, or `-` for stdin.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The input is larger than its limit.
    #[error("{path}: more than {limit} bytes, over the limit for {what}; {fix}")]
    TooLarge {
        /// The path.
        path: String,
        /// The limit.
        limit: u64,
        /// What the input is.
        what: &'static str,
        /// What to do instead.
        fix: &'static str,
    },
    /// The input is not UTF-8 text.
    #[error("{path}: not a text file (byte {offset} is not UTF-8); {what} must be text")]
    NotText {
        /// The path.
        path: String,
        /// Where the first invalid byte is.
        offset: usize,
        /// What the input is.
        what: &'static str,
    },
    /// The YAML or JSON nests deeper than [`MAX_DEPTH`].
    #[error(
        "{path}: line {line}: nested more than {MAX_DEPTH} levels deep; Kubernetes manifests nest far less, check the file"
    )]
    TooDeep {
        /// The path.
        path: String,
        /// 1-based line where the limit is passed.
        line: usize,
    },
}

/// What is read, and its limit.
#[derive(Clone, Copy, Debug)]
pub struct Limit {
    /// At most this many bytes.
    pub bytes: u64,
    /// What the input is, for messages (`manifests`, `a payload, key or signature`).
    pub what: &'static str,
    /// What to do when it is too large.
    pub fix: &'static str,
}

/// Manifests: files given with `-f`, files in folders, stdin.
pub const MANIFESTS: Limit = Limit {
    bytes: MAX_MANIFEST_BYTES,
    what: "a manifest file",
    fix: "split it, or pass only the manifests",
};

/// Payloads, keys, signatures and gcloud exports.
pub const SMALL: Limit = Limit {
    bytes: MAX_SMALL_BYTES,
    what: "a payload, key or signature",
    fix: "check the file name",
};

/// Read `path` (`-` is stdin) up to `limit`, whatever it is (file, pipe, device).
pub fn read_bytes(path: &Path, limit: Limit) -> Result<Vec<u8>, InputError> {
    let shown = show(path);
    let io = |source| InputError::Io {
        path: shown.clone(),
        source,
    };
    let reader: Box<dyn Read> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(path).map_err(io)?)
    };
    let mut bytes = Vec::new();
    reader
        .take(limit.bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > limit.bytes {
        return Err(InputError::TooLarge {
            path: shown,
            limit: limit.bytes,
            what: limit.what,
            fix: limit.fix,
        });
    }
    Ok(bytes)
}

/// Read `path` as UTF-8 text, up to `limit`.
pub fn read_text(path: &Path, limit: Limit) -> Result<String, InputError> {
    String::from_utf8(read_bytes(path, limit)?).map_err(|e| InputError::NotText {
        path: show(path),
        offset: e.utf8_error().valid_up_to(),
        what: limit.what,
    })
}

/// How a path is shown in messages.
pub fn show(path: &Path) -> String {
    path.display().to_string()
}

/// Refuse YAML (or JSON) whose flow collections (`[`, `{`) or block indentation nest deeper
/// than [`MAX_DEPTH`], in one linear pass, before the parser sees it. Brackets inside quoted
/// scalars and comments are not counted; a bracket inside a plain scalar can only make the
/// count too high, never too low.
pub fn check_depth(path: &str, text: &str) -> Result<(), InputError> {
    let too_deep = |line| InputError::TooDeep {
        path: path.to_owned(),
        line,
    };
    let mut flow = 0usize;
    let mut quote: Option<char> = None;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        // Block nesting takes at least one column of indentation (or of `- `) per level; a
        // line indented this far is refused (the parser refuses depth over 128 itself, but
        // only after reading all of it).
        if quote.is_none() && flow == 0 {
            let indent = line
                .bytes()
                .take_while(|b| matches!(b, b' ' | b'-' | b'?' | b':'))
                .count();
            if indent > MAX_DEPTH * 4 {
                return Err(too_deep(number));
            }
        }
        let mut escaped = false;
        let mut previous = ' ';
        for c in line.chars() {
            match quote {
                Some('"') if escaped => escaped = false,
                Some('"') if c == '\\' => escaped = true,
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None => match c {
                    '#' if previous.is_whitespace() => break,
                    '"' | '\'' => quote = Some(c),
                    '[' | '{' => {
                        flow += 1;
                        if flow > MAX_DEPTH {
                            return Err(too_deep(number));
                        }
                    }
                    ']' | '}' => flow = flow.saturating_sub(1),
                    _ => {}
                },
            }
            previous = c;
        }
        // Quoted scalars may span lines: the state carries over.
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_is_bounded_before_parsing() {
        assert!(check_depth("ok.yaml", "a: [1, {b: [2]}]\nc: '[[[['\n# [[[[\n").is_ok());
        let deep = "[".repeat(MAX_DEPTH + 1);
        let err = check_depth("deep.yaml", &deep).unwrap_err().to_string();
        assert_eq!(
            err,
            "deep.yaml: line 1: nested more than 128 levels deep; Kubernetes manifests nest far less, check the file"
        );
        let dashes = "- ".repeat(MAX_DEPTH * 3);
        assert!(check_depth("dashes.yaml", &dashes).is_err());
        // Brackets in quotes, also across lines, are text.
        let quoted = format!("a: \"{}\n{}\"\n", "[".repeat(200), "{".repeat(200));
        assert!(check_depth("quoted.yaml", &quoted).is_ok());
    }

    #[test]
    fn streams_are_read_only_up_to_the_limit() {
        let limit = Limit {
            bytes: 1024,
            what: "a test input",
            fix: "make it smaller",
        };
        let err = read_bytes(Path::new("/dev/zero"), limit)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "/dev/zero: more than 1024 bytes, over the limit for a test input; make it smaller"
        );
    }
}
