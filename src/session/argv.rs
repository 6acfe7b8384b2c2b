//! Split a magic line into arguments like a shell: quotes keep spaces (`" Paris"`), backslash escapes.

/// Split `line`; an unclosed quote is an error naming it.
pub fn split(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                if c == q {
                    quote = None;
                } else if c == '\\' && q == '"' {
                    match chars.next() {
                        Some('n') => cur.push('\n'),
                        Some('t') => cur.push('\t'),
                        Some(n) => cur.push(n),
                        None => cur.push('\\'),
                    }
                } else {
                    cur.push(c);
                }
            }
            None => {
                if c == '"' || c == '\'' {
                    quote = Some(c);
                    in_word = true;
                } else if c == '\\' {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                    in_word = true;
                } else if c.is_whitespace() {
                    if in_word {
                        out.push(std::mem::take(&mut cur));
                        in_word = false;
                    }
                } else {
                    cur.push(c);
                    in_word = true;
                }
            }
        }
    }
    if let Some(q) = quote {
        return Err(format!("unclosed {q} quote in the magic line; close it"));
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn quotes_keep_leading_spaces() {
        assert_eq!(
            split(r#"attribute "The capital of France is" --target " Paris""#).unwrap(),
            vec![
                "attribute",
                "The capital of France is",
                "--target",
                " Paris"
            ]
        );
        assert_eq!(split("a 'b c' d\\ e").unwrap(), vec!["a", "b c", "d e"]);
        assert_eq!(split(r#""x\"y""#).unwrap(), vec![r#"x"y"#]);
        assert!(split("\"open").is_err());
        assert_eq!(split("   ").unwrap(), Vec::<String>::new());
    }
}
