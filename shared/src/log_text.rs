//! Text from the network in log lines: a user name, NAS-Identifier, Calling-Station-Id, tty or
//! remote host is attacker-controlled, and a newline in it could forge a whole log line (a fake
//! `login round finished outcome="accept"`). [`Escaped`] writes control characters as escapes.

use std::fmt;

/// Displays `self.0` with every control character (and the backslash that would make an
/// escape ambiguous) escaped: `a\nb` prints as `a\u{a}b`.
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c.is_control() || c == '\\' {
                write!(f, "{}", c.escape_unicode())?;
            } else {
                fmt::Write::write_char(f, c)?;
            }
        }
        Ok(())
    }
}

/// [`Escaped`] of an optional field (empty when absent).
pub fn escaped(s: Option<&str>) -> Escaped<'_> {
    Escaped(s.unwrap_or(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_cannot_break_a_line() {
        let forged = "root\n2026-01-01T00:00:00Z INFO login round finished outcome=\"accept\"";
        let shown = Escaped(forged).to_string();
        assert!(!shown.contains('\n'), "{shown}");
        assert!(shown.starts_with("root\\u{a}2026"), "{shown}");
        assert_eq!(Escaped("zoë@example.com").to_string(), "zoë@example.com");
        assert_eq!(
            Escaped("a\\b\r\t\u{7f}\u{1b}[31m").to_string(),
            "a\\u{5c}b\\u{d}\\u{9}\\u{7f}\\u{1b}[31m"
        );
        assert_eq!(escaped(None).to_string(), "");
    }
}
