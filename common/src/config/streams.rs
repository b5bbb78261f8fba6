//! The streams of `ingest.streams`: plain names, read as listed, and glob patterns (Redis
//! `MATCH` syntax), whose matching streams the kernel discovers while it runs; and which
//! discovered keys it must never read (its own dead-letter, re-publish and registration
//! streams).

use super::Config;

/// True when `name` is a glob pattern in Redis `MATCH` syntax (`*`, `?` or `[…]` not escaped
/// with `\`); braces are no pattern characters (`events:{a}` is a plain name with a hash tag).
pub fn is_pattern(name: &str) -> bool {
    let mut chars = name.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '*' | '?' | '[' => return true,
            _ => {}
        }
    }
    false
}

/// Whether `key` matches the glob `pattern` as Redis's `MATCH` (`stringmatchlen`) decides:
/// `*` any run, `?` one character, `[abc]`, `[^abc]`, `[a-z]`, `\x` the character `x`.
pub fn glob_match(pattern: &str, key: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let k: Vec<char> = key.chars().collect();
    matches(&p, &k)
}

fn matches(p: &[char], k: &[char]) -> bool {
    let (mut pi, mut ki) = (0, 0);
    // The last `*` seen and the key position it currently covers up to: on a mismatch it
    // takes one more character (classic backtracking, linear in practice).
    let mut star: Option<(usize, usize)> = None;
    while ki < k.len() {
        let step = match p.get(pi) {
            Some('*') => {
                star = Some((pi, ki));
                pi += 1;
                continue;
            }
            Some('?') => Some(pi + 1),
            Some('[') => class(p, pi, k[ki]),
            Some('\\') if pi + 1 < p.len() => (p[pi + 1] == k[ki]).then_some(pi + 2),
            Some(&c) => (c == k[ki]).then_some(pi + 1),
            None => None,
        };
        match (step, star) {
            (Some(next), _) => {
                pi = next;
                ki += 1;
            }
            (None, Some((sp, sk))) => {
                pi = sp + 1;
                ki = sk + 1;
                star = Some((sp, sk + 1));
            }
            (None, None) => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// `[…]` at `p[start]` against `c`: the position after the class when it matches.
fn class(p: &[char], start: usize, c: char) -> Option<usize> {
    let mut i = start + 1;
    let negate = p.get(i) == Some(&'^');
    if negate {
        i += 1;
    }
    let mut hit = false;
    while i < p.len() && p[i] != ']' {
        if p[i] == '\\' && i + 1 < p.len() {
            hit |= p[i + 1] == c;
            i += 2;
        } else if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            let (lo, hi) = if p[i] <= p[i + 2] {
                (p[i], p[i + 2])
            } else {
                (p[i + 2], p[i])
            };
            hit |= lo <= c && c <= hi;
            i += 3;
        } else {
            hit |= p[i] == c;
            i += 1;
        }
    }
    // An unclosed class ends the pattern, as in Redis.
    (hit != negate).then_some(i.min(p.len().saturating_sub(1)) + 1)
}

/// Which streams the kernel reads: the plain names of `ingest.streams` always, and a key
/// discovered for one of its patterns unless it is one of the kernel's own streams.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamSources {
    names: Vec<String>,
    patterns: Vec<String>,
    dlq_suffix: String,
    /// `republish.stream`, `auth.register.stream`: never sources, whether or not enabled
    /// (a kernel may have run with them on).
    own: Vec<String>,
    /// `auth.register.reply_prefix`: every reply stream starts with it.
    own_prefixes: Vec<String>,
    /// On a Redis Cluster a stream needs a hash tag (its dead letters go to its slot).
    cluster: bool,
}

/// Why a discovered key is not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// A dead-letter stream (ends with `ingest.dlq_suffix`).
    DeadLetters,
    /// `republish.stream`, `auth.register.stream` or a registration reply stream.
    KernelOwn,
    /// On a Redis Cluster, a name without a non-empty hash tag.
    NoHashTag,
}

impl StreamSources {
    /// The plain names, read from the start.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The patterns to discover streams for (none: no discovery at all).
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether a discovered `key` is a source, or why not.
    pub fn check(&self, key: &str) -> Result<(), Skip> {
        if key.ends_with(&self.dlq_suffix) {
            return Err(Skip::DeadLetters);
        }
        if self.own.iter().any(|own| own == key)
            || self.own_prefixes.iter().any(|p| key.starts_with(p))
        {
            return Err(Skip::KernelOwn);
        }
        if self.cluster && !has_hash_tag(key) {
            return Err(Skip::NoHashTag);
        }
        Ok(())
    }
}

impl Config {
    /// `ingest.streams` split into plain names and patterns, with what discovery must skip.
    pub fn stream_sources(&self) -> StreamSources {
        let (patterns, names) = self
            .ingest
            .streams
            .iter()
            .cloned()
            .partition(|s| is_pattern(s));
        StreamSources {
            names,
            patterns,
            dlq_suffix: self.ingest.dlq_suffix.clone(),
            own: vec![
                self.republish.stream.clone(),
                self.auth.register.stream.clone(),
            ],
            own_prefixes: vec![self.auth.register.reply_prefix.clone()],
            cluster: self.redis.url.starts_with("redis+cluster://"),
        }
    }
}

/// `{tag}` with a non-empty tag: Redis Cluster hashes only the tag, so keys sharing it share
/// a slot.
pub(super) fn has_hash_tag(key: &str) -> bool {
    key.find('{')
        .and_then(|open| key[open + 1..].find('}'))
        .is_some_and(|len| len > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_told_from_plain_names() {
        for plain in [
            "events",
            "events:{a}",
            "events:{orders}:x",
            r"ev\*ents",
            "a-b_c.d",
        ] {
            assert!(!is_pattern(plain), "{plain}");
        }
        for pattern in ["events:*", "events:{*}", "events:?", "events:[ab]", "*"] {
            assert!(is_pattern(pattern), "{pattern}");
        }
    }

    #[test]
    fn globs_match_as_redis_match_does() {
        let cases = [
            ("events:*", "events:a", true),
            ("events:*", "events:", true),
            ("events:*", "event", false),
            ("events:{*}", "events:{a}", true),
            ("events:{*}", "events:{a}:dlq", false),
            ("events:{*}*", "events:{a}:dlq", true),
            ("*:dlq", "events:{a}:dlq", true),
            ("e?ents", "events", true),
            ("e?ents", "eents", false),
            ("events:[ab]", "events:b", true),
            ("events:[ab]", "events:c", false),
            ("events:[^ab]", "events:c", true),
            ("events:[a-c]", "events:b", true),
            ("events:[a-c]", "events:d", false),
            (r"ev\*", "ev*", true),
            (r"ev\*", "eva", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("*", "", true),
        ];
        for (pattern, key, want) in cases {
            assert_eq!(glob_match(pattern, key), want, "{pattern} ~ {key}");
        }
    }

    #[test]
    fn discovery_skips_the_kernels_own_streams() {
        let mut config = Config::default();
        config.ingest.streams = vec!["events:*".into(), "orders".into()];
        let sources = config.stream_sources();
        assert_eq!(sources.names(), ["orders"]);
        assert_eq!(sources.patterns(), ["events:*"]);
        assert_eq!(sources.check("events:a"), Ok(()));
        assert_eq!(sources.check("events:a:dlq"), Err(Skip::DeadLetters));
        assert_eq!(sources.check("events:stored"), Err(Skip::KernelOwn));
        assert_eq!(sources.check("fdc:register"), Err(Skip::KernelOwn));
        assert_eq!(
            sources.check("fdc:register:reply:abc"),
            Err(Skip::KernelOwn)
        );
        config.redis.url = "redis+cluster://h:1/".into();
        config.ingest.streams = vec!["events:{*}".into()];
        let sources = config.stream_sources();
        assert_eq!(sources.check("events:{a}"), Ok(()));
        assert_eq!(sources.check("events:{}"), Err(Skip::NoHashTag));
        assert_eq!(sources.check("events:{a}:dlq"), Err(Skip::DeadLetters));
    }
}
