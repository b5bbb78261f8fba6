//! Keeping secrets out of printed configs and logs.

/// Replaces the password of a URL (`scheme://user:password@host`) with `***`.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    let userinfo = &authority[..at];
    let redacted = match userinfo.find(':') {
        Some(colon) => format!("{}:***", &userinfo[..colon]),
        None => userinfo.to_string(),
    };
    format!("{}{}{}", &url[..scheme_end + 3], redacted, &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn hides_passwords_only() {
        assert_eq!(
            redact_url("postgres://fdc:s3cret@db:5432/fdc"),
            "postgres://fdc:***@db:5432/fdc"
        );
        assert_eq!(redact_url("redis://:pw@r:6379/0"), "redis://:***@r:6379/0");
        assert_eq!(redact_url("postgres://fdc@db/fdc"), "postgres://fdc@db/fdc");
        assert_eq!(redact_url("redis://r:6379/"), "redis://r:6379/");
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
