//! CPU time this process has used, from `/proc/self/stat` (Linux); how a user learns how many
//! generator cores a target rate needs.

/// Clock ticks per second of `/proc` times (`sysconf(_SC_CLK_TCK)` is 100 on every Linux
/// architecture in use).
const CLK_TCK: f64 = 100.0;

/// User plus system CPU seconds of this process, when the platform tells.
pub fn process_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name, which may itself contain spaces.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / CLK_TCK)
}

#[cfg(test)]
mod test {
    #[test]
    fn test_cpu_time_grows() {
        let Some(a) = super::process_cpu_secs() else {
            return;
        };
        let mut x = 0u64;
        let until = std::time::Instant::now() + std::time::Duration::from_millis(60);
        while std::time::Instant::now() < until {
            x = x.wrapping_mul(31).wrapping_add(1);
        }
        std::hint::black_box(x);
        let b = super::process_cpu_secs().unwrap();
        assert!(b >= a);
    }
}
