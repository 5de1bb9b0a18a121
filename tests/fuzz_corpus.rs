//! Replays the committed fuzz corpora (fuzz-targets/corpus/TARGET/, minimised by libFuzzer's
//! merge) through the same target bodies the fuzzers run, so an input that once crashed a
//! decoder, or reached code no other input reaches, fails `cargo test` if it regresses. Also
//! the seed writer the fuzz script uses to start corpora from the repository's captures.

use std::path::{Path, PathBuf};

use kmsharness::capture;
use kmsharness::wire::ndr::{ActivationRequest, ActivationResponse, Syntax};
use kmsharness::wire::reassembly::Reassembler;
use kmsharness::wire::rpc::{Body, Pdu, split_pdu};

#[path = "../fuzz-targets/src/targets.rs"]
mod targets;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_file_runs_clean() {
    let mut failed = Vec::new();
    for &(name, target) in targets::TARGETS {
        let dir = root().join("fuzz-targets/corpus").join(name);
        let inputs = files(&dir);
        assert!(!inputs.is_empty(), "{}: no corpus", dir.display());
        for path in inputs {
            let bytes = std::fs::read(&path).unwrap();
            if std::panic::catch_unwind(|| target(&bytes)).is_err() {
                failed.push(path.display().to_string());
            }
        }
    }
    assert!(failed.is_empty(), "targets panicked on: {failed:?}");
}

/// The corpora stay small enough to replay in seconds and to keep in the repository.
#[test]
fn corpora_stay_small() {
    let (mut count, mut bytes) = (0, 0);
    for &(name, _) in targets::TARGETS {
        for path in files(&root().join("fuzz-targets/corpus").join(name)) {
            count += 1;
            bytes += std::fs::metadata(&path).unwrap().len();
        }
    }
    assert!(count <= 2000, "{count} corpus files");
    assert!(bytes <= 4 << 20, "{bytes} bytes of corpus");
}

/// Writes seed inputs for every target from captures/ and vectors/ into
/// `$KMSHARNESS_FUZZ_SEEDS/TARGET/` (run by `fuzz-targets/fuzz seed`).
#[test]
#[ignore = "writes files; run by fuzz-targets/fuzz seed"]
fn write_seeds() {
    let Some(out) = std::env::var_os("KMSHARNESS_FUZZ_SEEDS") else {
        panic!("set KMSHARNESS_FUZZ_SEEDS to the seed directory");
    };
    let out = PathBuf::from(out);
    let mut n = 0usize;
    let mut put = |target: &str, bytes: &[u8]| {
        let dir = out.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        n += 1;
        std::fs::write(dir.join(format!("seed-{n:05}")), bytes).unwrap();
    };
    let captures = root().join("captures");
    for path in files(&captures) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".txt") || name.ends_with(".log") {
            // vlmcs's output and the hosts' logs print the ePIDs they saw.
            let text = std::fs::read_to_string(&path).unwrap();
            for word in text.split(|c: char| c.is_whitespace() || c == '"' || c == ',') {
                if word.len() > 20 && word.bytes().filter(|&b| b == b'-').count() >= 5 {
                    put("epid", word.as_bytes());
                }
            }
            continue;
        }
        if !name.ends_with(".pcap") && !name.ends_with(".pcapng") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        put("capture", &bytes);
        // The client's options byte (see targets::client_session): version, then what the
        // capture's client left out (vlmcs's -N0, -B0 and -p, by the file's name).
        let mut options = if name.contains("v4") {
            0
        } else if name.contains("v5") {
            1
        } else {
            2
        };
        if name.contains("N0") {
            options |= 4;
        }
        if name.contains("B0") {
            options |= 8;
        }
        if name.contains("-p-") {
            options |= 16;
        }
        for conn in capture::read(&bytes).connections {
            let (sent, got) = (&conn.to_server.data, &conn.to_client.data);
            put("host_session", sent);
            put("rpc_pdu", sent);
            put("rpc_pdu", got);
            let mut reply = vec![options];
            reply.extend_from_slice(got);
            put("client_session", &reply);
            for stream in [sent, got] {
                stubs(stream, &mut put);
            }
        }
    }
    for path in files(&root().join("captures/genuine")) {
        if path.extension().is_some_and(|e| e == "hex") {
            let text = std::fs::read_to_string(&path).unwrap();
            let hex: String = text.chars().filter(char::is_ascii_hexdigit).collect();
            if let Ok(bytes) = hex::decode(hex) {
                put("rpc_pdu", &bytes);
                put("host_session", &bytes);
            }
        }
    }
}

/// Every reassembled call's stub, and the KMS message inside it, as seeds.
fn stubs(stream: &[u8], put: &mut impl FnMut(&str, &[u8])) {
    let mut reassembler = Reassembler::new();
    let mut rest = stream;
    while let Ok(Some((bytes, tail))) = split_pdu(rest) {
        rest = tail;
        let Ok(pdu) = Pdu::parse(bytes) else {
            continue;
        };
        let is_request = matches!(pdu.body, Body::Request(_));
        let Ok(Some(call)) = reassembler.push(&pdu) else {
            continue;
        };
        put("ndr_stub", &call.stub);
        for syntax in [Syntax::Ndr32, Syntax::Ndr64] {
            if is_request {
                if let Ok(req) = ActivationRequest::parse(syntax, &call.stub)
                    && req.counts_agree()
                {
                    put("kms_request", req.body);
                }
            } else if let Ok(resp) = ActivationResponse::parse(syntax, &call.stub)
                && resp.counts_agree()
                && !resp.body.is_empty()
            {
                put("kms_response", resp.body);
            }
        }
    }
}
