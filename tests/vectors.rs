//! Known-answer vectors in `vectors/`: each cipher, MAC, hash and HMAC reproduces bytes that
//! third-party programs produced (see `vectors/README.md` for where each vector came from).
//!
//! `cargo test --test tests regenerate_vectors -- --ignored` rewrites the files from
//! `captures/`; the other tests only read them.

use std::path::{Path, PathBuf};

use kmsharness::capture::{self, conversation};
use kmsharness::crypto::{self, v4, v5, v6};
use kmsharness::proto::client::message::cipher_for;
use kmsharness::wire::kms::{FileTime, Format, REQUEST_BASE_LEN, split_envelope};
use kmsharness::wire::ndr::{ActivationRequest, ActivationResponse};
use kmsharness::wire::rpc::{Body, Pdu, split_pdu};
use serde::{Deserialize, Serialize};

use crate::support::pykms_log;

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("vectors")
}

/// A V4 MAC vector.
#[derive(Debug, Serialize, Deserialize)]
struct MacVector {
    source: String,
    message: String,
    mac: String,
}

/// A CBC vector: `plaintext` (padding included) encrypts under `iv` to `ciphertext`.
#[derive(Debug, Serialize, Deserialize)]
struct CbcVector {
    source: String,
    iv: String,
    ciphertext: String,
    plaintext: String,
    /// Where the plaintext comes from.
    plaintext_source: String,
}

/// A V5/V6 response hash vector: the salt a host chose and the SHA-256 it sent.
#[derive(Debug, Serialize, Deserialize)]
struct HashVector {
    source: String,
    salt: String,
    sha256: String,
}

/// A V6 HMAC vector.
#[derive(Debug, Serialize, Deserialize)]
struct HmacVector {
    source: String,
    client_time: u64,
    key: String,
    data: String,
    hmac: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Vectors {
    v4_mac: Vec<MacVector>,
    v5_cbc: Vec<CbcVector>,
    v6_cbc: Vec<CbcVector>,
    response_hash: Vec<HashVector>,
    v6_hmac: Vec<HmacVector>,
}

const FILES: [&str; 5] = ["v4-mac", "v5-cbc", "v6-cbc", "response-hash", "v6-hmac"];

fn load<T: for<'de> Deserialize<'de>>(name: &str) -> Vec<T> {
    let path = vectors_dir().join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

fn h16(s: &str) -> [u8; 16] {
    h(s).try_into().unwrap()
}

#[test]
fn v4_mac_known_answers() {
    let vectors: Vec<MacVector> = load("v4-mac");
    assert!(vectors.len() >= 4);
    for v in vectors {
        assert_eq!(hex::encode(v4::mac(&h(&v.message))), v.mac, "{}", v.source);
    }
}

fn check_cbc(name: &str, cipher: &crypto::rijndael::Rijndael) {
    let vectors: Vec<CbcVector> = load(name);
    assert!(vectors.len() >= 4, "{name}");
    for v in vectors {
        let iv = h16(&v.iv);
        let mut data = h(&v.ciphertext);
        cipher.cbc_decrypt(&iv, &mut data);
        assert_eq!(hex::encode(&data), v.plaintext, "{}", v.source);
        assert!(crypto::unpadded_len(&data).is_ok(), "{}", v.source);
        cipher.cbc_encrypt(&iv, &mut data);
        assert_eq!(hex::encode(&data), v.ciphertext, "{}", v.source);
    }
}

#[test]
fn v5_cbc_known_answers() {
    check_cbc("v5-cbc", v5::cipher());
}

#[test]
fn v6_cbc_known_answers() {
    check_cbc("v6-cbc", v6::cipher());
}

#[test]
fn response_hash_known_answers() {
    let vectors: Vec<HashVector> = load("response-hash");
    assert!(vectors.len() >= 4);
    for v in vectors {
        assert_eq!(
            hex::encode(crypto::sha256(&h(&v.salt))),
            v.sha256,
            "{}",
            v.source
        );
    }
}

#[test]
fn v6_hmac_known_answers() {
    let vectors: Vec<HmacVector> = load("v6-hmac");
    assert!(vectors.len() >= 2);
    for v in vectors {
        let key = v6::hmac_key(v.client_time, 0);
        assert_eq!(hex::encode(key), v.key, "{}", v.source);
        assert_eq!(
            hex::encode(v6::hmac(&key, &h(&v.data))),
            v.hmac,
            "{}",
            v.source
        );
    }
}

#[test]
#[ignore = "rewrites vectors/ from captures/; run by hand"]
fn regenerate_vectors() {
    let mut all = Vectors::default();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures");
    let mut stems: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            (p.extension()? == "pcap").then(|| p.file_stem().unwrap().to_string_lossy().into())
        })
        .filter(|s: &String| s.starts_with("vlmcs-") && !s.contains("n30"))
        .collect();
    stems.sort();
    for stem in stems {
        let pcap = std::fs::read(dir.join(format!("{stem}.pcap"))).unwrap();
        let log =
            std::fs::read_to_string(dir.join(format!("{stem}.server.log"))).unwrap_or_default();
        let pykms = pykms_log::decrypted_requests(&log);
        let cap = capture::read(&pcap).into_result().unwrap();
        let mut n = 0;
        for conn in &cap.connections {
            let conv = conversation::decode(conn);
            // The raw KMS bodies, in call order, straight from the streams.
            let bodies = |data: &[u8], request: bool| -> Vec<Vec<u8>> {
                let mut out = Vec::new();
                let mut rest = data;
                while let Some((pdu, tail)) = split_pdu(rest).unwrap() {
                    rest = tail;
                    let pdu = Pdu::parse(pdu).unwrap();
                    let syntax = |ctx| {
                        conv.activations
                            .iter()
                            .find(|a| a.context_id == ctx)
                            .and_then(|a| a.syntax)
                            .unwrap()
                    };
                    match (&pdu.body, request) {
                        (Body::Request(r), true) => out.push(
                            ActivationRequest::parse(syntax(r.context_id), r.stub)
                                .unwrap()
                                .body
                                .to_vec(),
                        ),
                        (Body::Response(r), false) => out.push(
                            ActivationResponse::parse(syntax(r.context_id), r.stub)
                                .unwrap()
                                .body
                                .to_vec(),
                        ),
                        _ => {}
                    }
                }
                out
            };
            let requests = bodies(&conn.to_server.data, true);
            let responses = bodies(&conn.to_client.data, false);
            for ((ex, req_bytes), resp_bytes) in
                conv.activations.iter().zip(&requests).zip(&responses)
            {
                let req = ex.request.as_ref().unwrap();
                let format = req.format;
                let source = |what: &str| format!("{stem}.pcap, {what} {}", n + 1);
                match format {
                    Format::V4 => {
                        all.v4_mac.push(MacVector {
                            source: source("request (vlmcs)"),
                            message: hex::encode(&req_bytes[..REQUEST_BASE_LEN]),
                            mac: hex::encode(&req_bytes[REQUEST_BASE_LEN..]),
                        });
                        let end = resp_bytes.len() - 16;
                        all.v4_mac.push(MacVector {
                            source: source("response (host)"),
                            message: hex::encode(&resp_bytes[..end]),
                            mac: hex::encode(&resp_bytes[end..]),
                        });
                    }
                    Format::V5 | Format::V6 => {
                        let cipher = cipher_for(format);
                        // Request: ciphertext after the clear version and IV, under the IV.
                        let mut plain = req_bytes[20..].to_vec();
                        cipher.cbc_decrypt(&req.iv, &mut plain);
                        let independent = pykms.get(n);
                        let plaintext_source = match independent {
                            Some(p) => {
                                assert_eq!(p[..], plain[..p.len()], "{stem}");
                                "py-kms log (KMS Request Bytes), pad per PKCS#7"
                            }
                            None => {
                                "decrypted here; fields equal vlmcs's printout (tests/captures.rs)"
                            }
                        };
                        let list = if format == Format::V5 {
                            &mut all.v5_cbc
                        } else {
                            &mut all.v6_cbc
                        };
                        list.push(CbcVector {
                            source: source("request (vlmcs)"),
                            iv: hex::encode(req.iv),
                            ciphertext: hex::encode(&req_bytes[20..]),
                            plaintext: hex::encode(&plain),
                            plaintext_source: plaintext_source.into(),
                        });
                        // Response: everything after the clear version, under a null IV.
                        let (_, rest) = split_envelope(resp_bytes).unwrap();
                        let mut plain = rest.to_vec();
                        cipher.cbc_decrypt(&[0; 16], &mut plain);
                        list.push(CbcVector {
                            source: source("response (host)"),
                            iv: hex::encode([0u8; 16]),
                            ciphertext: hex::encode(rest),
                            plaintext: hex::encode(&plain),
                            plaintext_source: "decrypted here; every response check passes".into(),
                        });
                        let unpadded = crypto::unpadded_len(&plain).unwrap();
                        let trailer = if format == Format::V6 { 88 } else { 48 };
                        let t = unpadded - trailer;
                        let salt_xor: [u8; 16] = plain[t..t + 16].try_into().unwrap();
                        all.response_hash.push(HashVector {
                            source: source("response (host)"),
                            salt: hex::encode(crypto::xor16(&salt_xor, &req.decrypted_iv)),
                            sha256: hex::encode(&plain[t + 16..t + 48]),
                        });
                        if format == Format::V6 {
                            let time = req.base.client_time;
                            let key = v6::hmac_key(time.0, 0);
                            all.v6_hmac.push(HmacVector {
                                source: source("response (host)"),
                                client_time: FileTime(time.0).0,
                                key: hex::encode(key),
                                data: hex::encode(&plain[..unpadded - 16]),
                                hmac: hex::encode(&plain[unpadded - 16..unpadded]),
                            });
                        }
                    }
                }
                n += 1;
            }
        }
    }
    let write = |name: &str, value: serde_json::Value| {
        let text = serde_json::to_string_pretty(&value).unwrap() + "\n";
        std::fs::write(vectors_dir().join(format!("{name}.json")), text).unwrap();
    };
    let v = serde_json::to_value(&all).unwrap();
    for (name, key) in FILES
        .iter()
        .zip(["v4_mac", "v5_cbc", "v6_cbc", "response_hash", "v6_hmac"])
    {
        write(name, v[key].clone());
    }
}

/// A clone has no `../shared`: every file a vector or its README cites must be in the
/// repository, and Microsoft's pages are cited by title and address.
#[test]
fn vectors_cite_only_what_a_clone_has() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![vectors_dir().join("README.md")];
    let mut dirs = vec![vectors_dir()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "json" || e == "toml") {
                files.push(path);
            }
        }
    }
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            !text.contains("../shared"),
            "{} cites ../shared",
            file.display()
        );
        // Every `name.md` cited must resolve from the repository root.
        for word in text.split(|c: char| !(c.is_alphanumeric() || "/._-".contains(c))) {
            if let Some(stem) = word.strip_suffix(".md")
                && !stem.is_empty()
                && !word.starts_with("http")
                && !word.contains("learn.microsoft.com")
            {
                assert!(
                    root.join(word).exists(),
                    "{} cites {word}, which a clone lacks",
                    file.display()
                );
            }
        }
    }
}
