//! Test support: the requests py-kms decrypted, as its DEBUG log dumps them after
//! "KMS Request Bytes:" (see captures/*.server.log).

/// Every "KMS Request Bytes" hex dump in the log, decoded, in order.
pub fn decrypted_requests(log: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut lines = log.lines();
    while let Some(line) = lines.next() {
        if line.trim_end().ends_with("KMS Request Bytes:") {
            let hex: String = lines
                .by_ref()
                .skip_while(|l| l.trim().is_empty())
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            if let Ok(bytes) = hex::decode(hex) {
                out.push(bytes);
            }
        }
    }
    out
}
