//! Bad inputs: bodies no endpoint should choke on, values of the wrong type for any JSON field,
//! and the probes that put them in each field of a target's body.

use super::targets::{Base, Probe, Target};
use serde_json::{Value, json};

/// A small deterministic generator, so that "random" bodies are the same on every run.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                self.0.to_le_bytes()[3]
            })
            .collect()
    }
}

pub const JSON: Option<&str> = Some("application/json");
pub const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

/// Bodies that no endpoint should choke on.
pub fn garbage_bodies() -> Vec<(String, Option<&'static str>, Vec<u8>)> {
    let mut rng = XorShift(0x5eed_1234_abcd_0001);
    let mut v: Vec<(String, Option<&'static str>, Vec<u8>)> = vec![
        ("empty, no content type".into(), None, vec![]),
        ("empty JSON".into(), JSON, vec![]),
        ("random 1 byte".into(), Some("application/octet-stream"), rng.bytes(1)),
        ("random 100 bytes".into(), Some("application/octet-stream"), rng.bytes(100)),
        ("random 5000 bytes as JSON".into(), JSON, rng.bytes(5000)),
        ("invalid UTF-8".into(), JSON, b"\xff\xfe\xfd".to_vec()),
        ("invalid UTF-8 in a string".into(), JSON, b"{\"type\": \"\xff\xfe\", \"refresh_token\": \"\xc3\x28\"}".to_vec()),
        ("lone surrogate".into(), JSON, br#"{"refresh_token": "\ud800", "type": "\udfff"}"#.to_vec()),
        ("NUL bytes".into(), JSON, b"\x00\x00\x00".to_vec()),
        ("escaped NUL".into(), JSON, br#"{"password": "\u0000", "user": "al\u0000ice"}"#.to_vec()),
        ("BOM then JSON".into(), JSON, b"\xef\xbb\xbf{}".to_vec()),
        ("form body".into(), FORM, b"a=b&c=%ZZ&=&&type=m.login.password".to_vec()),
        ("text body".into(), Some("text/plain"), b"hello".to_vec()),
        ("JSON array".into(), JSON, b"[]".to_vec()),
        ("JSON null".into(), JSON, b"null".to_vec()),
        ("JSON string".into(), JSON, b"\"x\"".to_vec()),
        ("JSON number".into(), JSON, b"1".to_vec()),
        ("trailing garbage".into(), JSON, b"{} xyz".to_vec()),
        ("truncated JSON".into(), JSON, b"{\"type\": \"m.login.pass".to_vec()),
        ("100,000 [".into(), JSON, vec![b'['; 100_000]),
        ("50,000 nested objects".into(), JSON, "{\"a\":".repeat(50_000).into_bytes()),
        ("balanced nesting 200 deep".into(), JSON, format!("{}{}", "[".repeat(200), "]".repeat(200)).into_bytes()),
        ("huge exponent".into(), JSON, br#"{"refresh_token": 1e999999, "timeout": -1e999999}"#.to_vec()),
        ("2^70".into(), JSON, br#"{"refresh_token": 1180591620717411303424, "by": 1180591620717411303424}"#.to_vec()),
        ("10,000 digits".into(), JSON, format!("{{\"x\": 1{}}}", "0".repeat(10_000)).into_bytes()),
        (
            "duplicate keys".into(),
            JSON,
            br#"{"refresh_token":"a","refresh_token":"b","type":"m.login.password","type":"x","user":"alice","user":"bob"}"#.to_vec(),
        ),
        ("500 KB string".into(), JSON, format!("{{\"a\": \"{}\"}}", "x".repeat(500_000)).into_bytes()),
        (
            "20,000 keys".into(),
            JSON,
            {
                let fields: Vec<String> = (0..20_000).map(|i| format!("\"k{i}\":{i}")).collect();
                format!("{{{}}}", fields.join(",")).into_bytes()
            },
        ),
        (
            "JSON on a form endpoint".into(),
            JSON,
            br#"{"grant_type":"refresh_token","refresh_token":"x","client_id":"y","token":"z"}"#.to_vec(),
        ),
        (
            "repeated form parameters".into(),
            FORM,
            b"grant_type=refresh_token&grant_type=authorization_code&client_id={client}&client_id=x&token=a&token=b"
                .to_vec(),
        ),
        ("invalid UTF-8 form".into(), FORM, b"client_id=\xff&grant_type=%FF%FE&token=%C3%28".to_vec()),
        (
            "form with an odd charset".into(),
            Some("application/x-www-form-urlencoded; charset=ISO-8859-1; x=\"y"),
            b"grant_type=refresh_token&client_id={client}&refresh_token=%00".to_vec(),
        ),
        ("multipart".into(), Some("multipart/form-data; boundary=x"), b"--x\r\n\r\n--x--".to_vec()),
    ];
    v.push(("content type with invalid bytes".into(), None, b"{}".to_vec()));
    v
}

/// Values of the wrong type (or of absurd size) for any JSON field, as raw JSON text.
pub fn wrong_values() -> Vec<String> {
    let mut v: Vec<String> = [
        "null",
        "true",
        "false",
        "0",
        "-1",
        "1.5",
        "1e308",
        "1e999999",
        "18446744073709551615",
        "1180591620717411303424",
        "-1180591620717411303424",
        "\"\"",
        "\"x\"",
        "\"\\u0000\"",
        "[]",
        "[1,\"a\",null]",
        "{}",
        "{\"a\":{\"b\":[]}}",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    v.push(format!("\"{}\"", "x".repeat(10_000)));
    v.push(format!("{}{}", "[".repeat(120), "]".repeat(120)));
    v
}

pub const MARK: &str = "@@wrong@@";

/// Every path to a field of `v` (objects only), e.g. `["identifier", "user"]`.
pub fn field_paths(v: &Value, prefix: &[String], out: &mut Vec<Vec<String>>) {
    if let Value::Object(m) = v {
        for (k, child) in m {
            let mut p = prefix.to_vec();
            p.push(k.clone());
            out.push(p.clone());
            field_paths(child, &p, out);
        }
    }
}

pub fn with_field(v: &Value, path: &[String], new: Option<Value>) -> Value {
    let mut out = v.clone();
    let mut cur = &mut out;
    for (i, k) in path.iter().enumerate() {
        let Value::Object(m) = cur else { break };
        if i + 1 == path.len() {
            match &new {
                Some(n) => {
                    m.insert(k.clone(), n.clone());
                }
                None => {
                    m.remove(k);
                }
            }
            break;
        }
        let Some(next) = m.get_mut(k) else { break };
        cur = next;
    }
    out
}

/// For each field of the base body: each wrong value, and the field left out.
pub fn wrong_type_probes(target: &Target) -> Vec<Probe> {
    let mut probes = Vec::new();
    match &target.base {
        Base::Json(base) => {
            let mut paths = Vec::new();
            field_paths(base, &[], &mut paths);
            for path in paths {
                let name = path.join(".");
                let gone = with_field(base, &path, None);
                probes.push(Probe::new(
                    target,
                    format!("{name} missing"),
                    JSON,
                    gone.to_string().into_bytes(),
                ));
                let marked = with_field(base, &path, Some(json!(MARK))).to_string();
                for w in wrong_values() {
                    let body = marked.replace(&format!("\"{MARK}\""), &w);
                    let shown: String = w.chars().take(24).collect();
                    probes.push(Probe::new(
                        target,
                        format!("{name} = {shown}"),
                        JSON,
                        body.into_bytes(),
                    ));
                }
            }
        }
        Base::Form(base) => {
            let pairs: Vec<(&str, &str)> = base.split('&').filter_map(|p| p.split_once('=')).collect();
            let odd: Vec<String> = vec![
                String::new(),
                "%FF%FE".into(),
                "%00".into(),
                "%ZZ".into(),
                "x".repeat(10_000),
                "a%26b%3Dc".into(),
                "%F0%9F%92%A9".into(),
            ];
            for (i, (key, _)) in pairs.iter().enumerate() {
                let without: Vec<String> = pairs
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, (k, v))| format!("{k}={v}"))
                    .collect();
                probes.push(Probe::new(
                    target,
                    format!("{key} missing"),
                    FORM,
                    without.join("&").into_bytes(),
                ));
                let repeated = format!("{base}&{key}=again");
                probes.push(Probe::new(
                    target,
                    format!("{key} repeated"),
                    FORM,
                    repeated.into_bytes(),
                ));
                for value in &odd {
                    let body: Vec<String> = pairs
                        .iter()
                        .enumerate()
                        .map(|(j, (k, v))| {
                            if j == i {
                                format!("{k}={value}")
                            } else {
                                format!("{k}={v}")
                            }
                        })
                        .collect();
                    let shown: String = value.chars().take(24).collect();
                    probes.push(Probe::new(
                        target,
                        format!("{key} = {shown}"),
                        FORM,
                        body.join("&").into_bytes(),
                    ));
                }
            }
        }
        Base::None => {}
    }
    probes
}
