//! Text from elsewhere (a kernel's refusal, a kubelet's message) as it goes into a status
//! condition or an Event: on one line, bounded.

/// `text` with every control character (newlines included) as a space, cut to at most `max`
/// bytes on a character boundary, with `…` where it was cut.
pub fn one_line(text: &str, max: usize) -> String {
    let mut line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if line.len() > max {
        let mut end = max;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
        line.push('…');
    }
    line
}
