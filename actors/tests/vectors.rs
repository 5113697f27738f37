//! The conformance vectors in `tests/vectors/*.json`, read from the files (never pasted), run
//! through paywarden's own signing, verification, decryption, amount and extraction code.
//!
//! Every test walks every array of vectors in its file and fails on an array it does not
//! know, so a vector added to a file cannot be silently skipped. Vectors that can only be
//! partly checked say why where they are handled.

// Test code: a failed unwrap is a failed assertion (STYLE §3 lets tests allow these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;

use actors::gateway::alipay::crypto as alipay_crypto;
use actors::gateway::alipay::transformers::{
    classify_failure, AlipayAmount, AlipayPrecreateResponse, AlipayQueryResponse, AlipayResponseStatus,
};
use actors::gateway::alipay::{AlipayGateway, AlipaySettings};
use actors::gateway::wechat::crypto::{
    self as wechat_crypto, DecryptError, KeyError, RsaSigningKey, RsaVerifyingKey, WechatApiV3Key, WechatPlatformKeys,
    WechatSignatureHeaders, WechatVerifyError,
};
use actors::gateway::wechat::transformers::{WechatTradeState, WechatTransaction};
use actors::gateway::wechat::{WechatGateway, WechatPlatformKeySettings, WechatSettings};
use actors::gateway::{
    CloseOutcome, FixedClock, Gateway, NotificationError, NotificationRequest, NotificationSubject, QrRequest,
    TradeState,
};
use chrono::{DateTime, TimeZone, Utc};
use entities::{Currency, MinorUnit, PayNo};
use secrecy::SecretString;
use serde_json::Value;

fn load(name: &str) -> Value {
    let path = format!(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/vectors/{}"), name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("cannot read {path}: {err}"));
    serde_json::from_str(&text).unwrap()
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} missing in {}", v["id"]))
}

fn id(v: &Value) -> &str {
    v["id"].as_str().unwrap_or("?")
}

/// A timestamp given as a string in some vectors and a number in others.
fn ts(v: &Value, key: &str) -> i64 {
    match &v[key] {
        Value::String(text) => text.parse().unwrap(),
        Value::Number(n) => n.as_i64().unwrap(),
        other => panic!("{key} is {other}"),
    }
}

fn at(unix: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(unix, 0).unwrap()
}

/// The arrays of vectors in a file, by name.
fn vector_lists(file: &Value) -> Vec<(String, Vec<Value>)> {
    file.as_object()
        .unwrap()
        .iter()
        .filter_map(|(name, value)| value.as_array().map(|list| (name.clone(), list.clone())))
        .collect()
}

fn lower_headers(v: &Value) -> BTreeMap<String, String> {
    v["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str().unwrap().to_owned()))
        .collect()
}

fn signature_headers(v: &Value) -> WechatSignatureHeaders {
    let headers = lower_headers(v);
    WechatSignatureHeaders::from_lookup(|name| headers.get(name).map(String::as_str)).unwrap()
}

/// Answers exactly one HTTP request with a fixed status, headers and body, so a gateway's
/// whole response path (status check, header lookup, verification, parsing) can run on a
/// recorded response. Returns the base URL.
async fn serve_once(status: u16, headers: Vec<(String, String)>, body: String) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        // Read the head, then as much body as Content-Length says.
        loop {
            let n = socket.read(&mut buf).await.unwrap();
            request.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&request).to_string();
            if let Some(head_end) = text.find("\r\n\r\n") {
                let length = text[..head_end]
                    .lines()
                    .find_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if request.len() >= head_end + 4 + length {
                    break;
                }
            }
            if n == 0 {
                break;
            }
        }
        let mut response = format!(
            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        for (name, value) in headers {
            response.push_str(&format!("{name}: {value}\r\n"));
        }
        response.push_str("\r\n");
        response.push_str(&body);
        socket.write_all(response.as_bytes()).await.unwrap();
        socket.shutdown().await.ok();
    });
    format!("http://{addr}")
}

// ------------------------------------------------------------------------------------------
// WeChat: request signing
// ------------------------------------------------------------------------------------------

#[test]
fn wechat_request_signing_vectors() {
    let file = load("wechat_v3_sign.json");
    let keys = &file["keys"];
    let signer = |name: &str| RsaSigningKey::from_pem(s(&keys[name], "private_key_pem")).unwrap();

    // The key material itself: every key parses, and each public form (SPKI PEM, certificate)
    // verifies what the private key signs.
    let doc = signer("doc_test_key");
    let doc_public = RsaVerifyingKey::from_pem(s(&keys["doc_test_key"], "public_key_pem")).unwrap();
    doc_public.verify(b"probe", &doc.sign(b"probe").unwrap()).unwrap();
    let go = signer("go_sdk_test_key");
    let go_sig = go.sign(b"probe").unwrap();
    RsaVerifyingKey::from_pem(s(&keys["go_sdk_test_key"], "matching_public_key_pem"))
        .unwrap()
        .verify(b"probe", &go_sig)
        .unwrap();
    for (serial, pem) in keys["go_sdk_test_key"]["matching_certificates"].as_object().unwrap() {
        let pem = pem.as_str().unwrap();
        assert_eq!(&wechat_crypto::certificate_serial(pem).unwrap(), serial);
        RsaVerifyingKey::from_pem(pem)
            .unwrap()
            .verify(b"probe", &go_sig)
            .unwrap();
    }
    // The Go repo's 'TESTING KEY' armor is a repository trick, not a key format: refused.
    assert_eq!(
        RsaSigningKey::from_pem(s(&keys["go_sdk_test_key"], "private_key_pem_as_in_repo")).unwrap_err(),
        KeyError::Label("TESTING KEY".into())
    );
    let java = signer("java_sdk_merchant_key");
    let java_cert = s(&keys["java_sdk_merchant_key"], "certificate_pem");
    assert_eq!(
        wechat_crypto::certificate_serial(java_cert).unwrap(),
        s(&keys["java_sdk_merchant_key"], "serial_no")
    );
    RsaVerifyingKey::from_pem(java_cert)
        .unwrap()
        .verify(b"probe", &java.sign(b"probe").unwrap())
        .unwrap();

    let mut checked = 0;
    for (list, vectors) in vector_lists(&file) {
        for v in &vectors {
            match list.as_str() {
                "vectors_full_request" | "vectors_derived_for_this_service" => {
                    let key = signer(s(v, "private_key_ref"));
                    let timestamp = ts(v, "timestamp");
                    let message = wechat_crypto::request_message(
                        s(v, "method"),
                        s(v, "url"),
                        timestamp,
                        s(v, "nonce_str"),
                        s(v, "body").as_bytes(),
                    );
                    assert_eq!(message, s(v, "expected_message").as_bytes(), "{}", id(v));
                    let signature = key.sign(&message).unwrap();
                    assert_eq!(signature, s(v, "expected_signature"), "{}", id(v));
                    if let Some(expected) = v["expected_authorization"].as_str() {
                        let header = wechat_crypto::authorization(
                            s(v, "mchid"),
                            s(v, "nonce_str"),
                            &signature,
                            timestamp,
                            s(v, "serial_no"),
                        );
                        assert_eq!(header, expected, "{}", id(v));
                        let parsed = wechat_crypto::parse_authorization(expected).unwrap();
                        assert_eq!(parsed.signature, signature);
                    }
                    if id(v).ends_with("_WRONG") {
                        // Negative control: a signature over the path without `?mchid=` is a
                        // valid signature of the wrong message, so it must not verify the
                        // message of the request actually sent (with the query).
                        let sent = wechat_crypto::request_message(
                            s(v, "method"),
                            &format!("{}?mchid={}", s(v, "url"), s(v, "mchid")),
                            timestamp,
                            s(v, "nonce_str"),
                            b"",
                        );
                        assert!(doc_public.verify(&sent, &signature).is_err());
                    }
                }
                "vectors_message_only" => {
                    let key = signer(s(v, "private_key_ref"));
                    let signature = key.sign(s(v, "message").as_bytes()).unwrap();
                    assert_eq!(signature, s(v, "expected_signature"), "{}", id(v));
                }
                "vectors_format_only" => {
                    // Message shape only: the SDK tests behind these used mock signers, so
                    // there is no real signature to compare.
                    let url = match v["url"].as_str() {
                        Some(url) => url.to_owned(),
                        // A full URI: the signed line is its raw path and query.
                        None => {
                            let uri = s(v, "request_uri");
                            let after_scheme = &uri[uri.find("://").unwrap() + 3..];
                            after_scheme[after_scheme.find('/').unwrap()..].to_owned()
                        }
                    };
                    let message = wechat_crypto::request_message(
                        s(v, "method"),
                        &url,
                        ts(v, "timestamp"),
                        s(v, "nonce_str"),
                        s(v, "body").as_bytes(),
                    );
                    assert_eq!(message, s(v, "expected_message").as_bytes(), "{}", id(v));
                    if let Some(mock) = v["expected_authorization_with_mock_signer"].as_str() {
                        // The Go SDK orders fields differently from the doc; our parser
                        // accepts any order. The scheme is the mock's, so swap in ours.
                        let ours = mock.replacen("WECHATPAY2-Mock", wechat_crypto::AUTH_SCHEME, 1);
                        let parsed = wechat_crypto::parse_authorization(&ours).unwrap();
                        assert_eq!(parsed.nonce, s(v, "nonce_str"));
                        assert_eq!(parsed.timestamp, ts(v, "timestamp").to_string());
                        assert_eq!(parsed.signature.as_bytes(), [b"Sign:".as_slice(), &message].concat());
                    }
                }
                other => panic!("unknown vector list {other}"),
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 14);
}

// ------------------------------------------------------------------------------------------
// WeChat: response verification
// ------------------------------------------------------------------------------------------

#[test]
fn wechat_response_verification_vectors() {
    let file = load("wechat_v3_response_verify.json");
    let platform = &file["platform_keys"]["java_sdk_wechat_pay"];
    let platform_signer = RsaSigningKey::from_pem(s(platform, "private_key_pem")).unwrap();
    assert_eq!(
        wechat_crypto::certificate_serial(s(platform, "certificate_pem")).unwrap(),
        s(platform, "serial")
    );
    let mut keys = WechatPlatformKeys::default();
    let serial = keys.insert_pem(None, s(platform, "certificate_pem")).unwrap();
    assert_eq!(serial, s(platform, "serial"));
    let from_spki = RsaVerifyingKey::from_pem(s(platform, "public_key_pem")).unwrap();
    from_spki
        .verify(b"probe", &platform_signer.sign(b"probe").unwrap())
        .unwrap();
    RsaVerifyingKey::from_pem(s(&file["platform_keys"]["doc_platform_public_key"], "public_key_pem")).unwrap();

    let mut checked = 0;
    for (list, vectors) in vector_lists(&file) {
        for v in &vectors {
            let expected_valid = v["expected_valid"].as_bool().unwrap();
            match list.as_str() {
                "vectors" if v.get("headers").is_some() => {
                    // The official example: its Wechatpay-Serial is not published, so the key
                    // is used directly instead of through the serial map.
                    let key = RsaVerifyingKey::from_pem(s(v, "public_key_pem")).unwrap();
                    let headers = lower_headers(v);
                    let (timestamp, nonce, signature) = (
                        &headers["wechatpay-timestamp"],
                        &headers["wechatpay-nonce"],
                        &headers["wechatpay-signature"],
                    );
                    let message = wechat_crypto::response_message(timestamp, nonce, s(v, "body").as_bytes());
                    if let Some(expected) = v["expected_message"].as_str() {
                        assert_eq!(message, expected.as_bytes());
                    }
                    let now = at(timestamp.parse().unwrap());
                    let valid = wechat_crypto::check_timestamp(timestamp, now).is_ok()
                        && key.verify(&message, signature).is_ok();
                    assert_eq!(valid, expected_valid, "{}", id(v));
                }
                "vectors" => {
                    // SDK primitive vectors: a message, a signature, and a key (certificate or
                    // public key with its id).
                    let mut map = WechatPlatformKeys::default();
                    let serial = match v["certificate_pem"].as_str() {
                        Some(pem) => {
                            let serial = map.insert_pem(None, pem).unwrap();
                            assert_eq!(serial, s(v, "serial"));
                            serial
                        }
                        None => map
                            .insert_pem(Some(s(v, "public_key_id")), s(v, "public_key_pem"))
                            .unwrap(),
                    };
                    let valid = map
                        .get(&serial)
                        .unwrap()
                        .verify(s(v, "message").as_bytes(), s(v, "signature"))
                        .is_ok();
                    assert_eq!(valid, expected_valid, "{}", id(v));
                }
                "vectors_derived_for_this_service" => {
                    let headers = signature_headers(v);
                    let body = s(v, "body").as_bytes();
                    let signed_at: i64 = headers.timestamp.parse().unwrap();
                    assert_eq!(
                        wechat_crypto::response_message(&headers.timestamp, &headers.nonce, body),
                        s(v, "expected_message").as_bytes()
                    );
                    let result = wechat_crypto::verify_signed(&keys, &headers, body, at(signed_at));
                    assert_eq!(result.is_ok(), expected_valid, "{}: {result:?}", id(v));
                    // The window holds in both directions: 299 s passes, 300 s does not.
                    for (skew, ok) in [(299, true), (-299, true), (300, false), (-300, false)] {
                        let result = wechat_crypto::verify_signed(&keys, &headers, body, at(signed_at + skew));
                        assert_eq!(result.is_ok(), ok, "{} at {skew:+} s: {result:?}", id(v));
                    }
                    // A serial we do not hold is refused before any RSA work.
                    let mut unknown = headers.clone();
                    unknown.serial = "UNKNOWN".into();
                    assert_eq!(
                        wechat_crypto::verify_signed(&keys, &unknown, body, at(signed_at)),
                        Err(WechatVerifyError::UnknownSerial("UNKNOWN".into()))
                    );
                    if !body.is_empty() {
                        let transaction: Result<WechatTransaction, _> = serde_json::from_slice(body);
                        if let Ok(transaction) = transaction {
                            let state = transaction.to_trade_state().unwrap();
                            match transaction.trade_state {
                                WechatTradeState::Success => {
                                    assert!(
                                        matches!(state, TradeState::Paid(ref paid) if paid.amount == MinorUnit::new(100).unwrap())
                                    )
                                }
                                WechatTradeState::Notpay => assert_eq!(state, TradeState::NotPaid),
                                other => panic!("unexpected {other:?}"),
                            }
                        }
                    }
                }
                other => panic!("unknown vector list {other}"),
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 10);
}

fn wechat_settings(api_base_url: String, platform_cert: &str, apiv3_key: &str, merchant_key: &str) -> WechatSettings {
    WechatSettings {
        mchid: "1900007291".into(),
        appid: "wxd678efh567hg6787".into(),
        merchant_serial_no: "408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB".into(),
        merchant_private_key_pem: SecretString::from(merchant_key.to_owned()),
        platform_keys: vec![WechatPlatformKeySettings {
            serial: None,
            pem: platform_cert.to_owned(),
        }],
        apiv3_key: SecretString::from(apiv3_key.to_owned()),
        api_base_url,
        notify_url: "https://merchant.example/webhooks/wechat".into(),
        close_retry_after_seconds: 60,
    }
}

/// The derived prepay (200) and close (204, empty body) responses through the whole gateway
/// path. The query vectors cannot go this way: their `out_trade_no` is 28 digits, not a
/// paywarden pay number, and the gateway checks the answer is for the trade it asked about;
/// they are verified above at the crypto level instead.
#[tokio::test]
async fn wechat_gateway_accepts_the_derived_prepay_and_close_responses() {
    let file = load("wechat_v3_response_verify.json");
    let sign_file = load("wechat_v3_sign.json");
    let merchant_key = s(&sign_file["keys"]["doc_test_key"], "private_key_pem");
    let platform_cert = s(&file["platform_keys"]["java_sdk_wechat_pay"], "certificate_pem");
    let vectors = file["vectors_derived_for_this_service"].as_array().unwrap();
    let find = |wanted: &str| vectors.iter().find(|v| id(v) == wanted).unwrap();
    let respond = |v: &Value| {
        let headers: Vec<(String, String)> = v["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        (v["http_status"].as_u64().unwrap(), headers, s(v, "body").to_owned())
    };
    let apiv3 = "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb";
    let clock = Arc::new(FixedClock(at(1_722_850_421)));

    let prepay = find("derived_native_prepay_200");
    let (status, headers, body) = respond(prepay);
    let base = serve_once(u16::try_from(status).unwrap(), headers, body).await;
    let gateway = WechatGateway::new(
        wechat_settings(base, platform_cert, apiv3, merchant_key),
        reqwest::Client::new(),
    )
    .unwrap()
    .with_clock(clock.clone());
    let created = gateway
        .create_qr(&QrRequest {
            pay_no: PayNo::new(42).unwrap(),
            amount: MinorUnit::new(100).unwrap(),
            currency: Currency::Cny,
            subject: "vector".into(),
            expires_at: at(1_722_851_321),
        })
        .await
        .unwrap();
    assert_eq!(created.code_url, "weixin://wxpay/bizpayurl?pr=p4lpSuKzz");

    let close = find("derived_close_204_empty_body");
    let (status, headers, body) = respond(close);
    let base = serve_once(u16::try_from(status).unwrap(), headers, body).await;
    let gateway = WechatGateway::new(
        wechat_settings(base, platform_cert, apiv3, merchant_key),
        reqwest::Client::new(),
    )
    .unwrap()
    .with_clock(clock.clone());
    assert_eq!(
        gateway.close(PayNo::new(42).unwrap()).await.unwrap(),
        CloseOutcome::Closed
    );

    // The same 204 six minutes later is a replay: refused, not "closed".
    let (status, headers, body) = respond(close);
    let base = serve_once(u16::try_from(status).unwrap(), headers, body).await;
    let late = WechatGateway::new(
        wechat_settings(base, platform_cert, apiv3, merchant_key),
        reqwest::Client::new(),
    )
    .unwrap()
    .with_clock(Arc::new(FixedClock(at(1_722_850_421 + 360))));
    assert!(matches!(
        late.close(PayNo::new(42).unwrap()).await,
        Err(actors::gateway::GatewayError::Verification(_))
    ));

    // A 404 carries no signature headers and is still read: not found.
    let base = serve_once(
        404,
        vec![("Content-Type".into(), "application/json".into())],
        r#"{"code":"ORDER_NOT_EXIST","message":"订单不存在"}"#.into(),
    )
    .await;
    let gateway = WechatGateway::new(
        wechat_settings(base, platform_cert, apiv3, merchant_key),
        reqwest::Client::new(),
    )
    .unwrap()
    .with_clock(clock);
    assert_eq!(
        gateway.query(PayNo::new(42).unwrap()).await.unwrap().state,
        TradeState::NotFound
    );
}

// ------------------------------------------------------------------------------------------
// WeChat: resource decryption
// ------------------------------------------------------------------------------------------

#[test]
fn wechat_resource_decryption_vectors() {
    let file = load("wechat_v3_notify_decrypt.json");
    let mut checked = 0;
    for (list, vectors) in vector_lists(&file) {
        assert_eq!(list, "vectors", "unknown vector list {list}");
        for v in &vectors {
            let key_text = s(v, "apiv3_key");
            let (nonce, aad, ciphertext) = (s(v, "nonce"), s(v, "associated_data"), s(v, "ciphertext_b64"));
            let expected = s(v, "expected_plaintext");
            match WechatApiV3Key::parse(SecretString::from(key_text.to_owned())) {
                Ok(key) => {
                    let plain = wechat_crypto::decrypt_resource(&key, nonce, aad, ciphertext).unwrap();
                    assert_eq!(plain, expected.as_bytes(), "{}", id(v));
                    if let Some(digest) = v["expected_plaintext_sha256"].as_str() {
                        use sha2::Digest;
                        assert_eq!(hex::encode(sha2::Sha256::digest(&plain)), digest);
                    }
                    // GCM is deterministic for a given nonce: encrypting gives the vector back.
                    assert_eq!(
                        wechat_crypto::encrypt_resource(&key, nonce, aad, expected.as_bytes()).unwrap(),
                        ciphertext,
                        "{}",
                        id(v)
                    );
                    // Wrong associated data fails authentication.
                    assert_eq!(
                        wechat_crypto::decrypt_resource(&key, nonce, &format!("{aad}x"), ciphertext),
                        Err(DecryptError::Authentication)
                    );
                }
                Err(err) => {
                    // The Go SDK's 16-byte key: it is AES-128-GCM in practice, which
                    // AEAD_AES_256_GCM does not allow, so paywarden refuses the key. The data
                    // itself is checked with AES-128 directly, to show the vector is sound and
                    // the refusal is about the key alone.
                    assert_eq!(err, KeyError::ApiV3KeyLength(16), "{}", id(v));
                    use aes_gcm::aead::{Aead, KeyInit, Payload};
                    use base64::Engine;
                    let cipher = aes_gcm::Aes128Gcm::new_from_slice(key_text.as_bytes()).unwrap();
                    let raw = base64::engine::general_purpose::STANDARD.decode(ciphertext).unwrap();
                    let plain = cipher
                        .decrypt(
                            aes_gcm::Nonce::from_slice(nonce.as_bytes()),
                            Payload {
                                msg: &raw,
                                aad: aad.as_bytes(),
                            },
                        )
                        .unwrap();
                    assert_eq!(plain, expected.as_bytes());
                }
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 7);
}

// ------------------------------------------------------------------------------------------
// WeChat: full notifications
// ------------------------------------------------------------------------------------------

#[test]
fn wechat_notification_vectors() {
    let file = load("wechat_v3_notify_full.json");
    let merchant_key = s(&load("wechat_v3_sign.json")["keys"]["doc_test_key"], "private_key_pem").to_owned();
    let mut checked = 0;
    for (list, vectors) in vector_lists(&file) {
        assert_eq!(list, "vectors", "unknown vector list {list}");
        for v in &vectors {
            let now = at(v["now_unix"].as_i64().unwrap());
            let request = NotificationRequest {
                headers: lower_headers(v),
                body: s(v, "body").as_bytes().to_vec(),
            };
            let expected_valid = v["expected_valid"].as_bool().unwrap();
            let cert = s(v, "platform_certificate_pem");
            let apiv3 = s(v, "apiv3_key");
            if let Some(message) = v["expected_verify_message"].as_str() {
                let headers = signature_headers(v);
                assert_eq!(
                    wechat_crypto::response_message(&headers.timestamp, &headers.nonce, &request.body),
                    message.as_bytes()
                );
            }
            if apiv3.len() != wechat_crypto::APIV3_KEY_LEN {
                // The Go SDK payscore notification: its signature is checked here, but its
                // 16-byte APIv3 key is refused (see the decryption test), and it is a payscore
                // event, not TRANSACTION.SUCCESS, so the gateway would not take it anyway.
                let mut keys = WechatPlatformKeys::default();
                keys.insert_pem(None, cert).unwrap();
                let result = wechat_crypto::verify_signed(&keys, &signature_headers(v), &request.body, now);
                assert_eq!(result.is_ok(), expected_valid, "{}", id(v));
                assert!(WechatApiV3Key::parse(SecretString::from(apiv3.to_owned())).is_err());
                checked += 1;
                continue;
            }
            let gateway = WechatGateway::new(
                wechat_settings("http://127.0.0.1:9".into(), cert, apiv3, &merchant_key),
                reqwest::Client::new(),
            )
            .unwrap()
            .with_clock(Arc::new(FixedClock(now)));
            let opened = gateway.open_notification(&request);
            assert_eq!(opened.is_ok(), expected_valid, "{}: {:?}", id(v), opened.as_ref().err());
            match opened {
                Ok(opened) => {
                    assert_eq!(opened.plaintext, s(v, "expected_resource_plaintext").as_bytes());
                    assert_eq!(opened.envelope.id, "EV-2018022511223320873");
                    assert!(matches!(
                        opened.transaction().unwrap().to_trade_state(),
                        Ok(TradeState::Paid(_))
                    ));
                    // Everything checks out; the 28-digit out_trade_no is not a paywarden pay
                    // number, but an authentic notification is still money: it is verified
                    // with the trade number as sent (no attempt of ours), to be stored for an
                    // operator, never refused.
                    let verified = gateway.verify_notification(&request).unwrap();
                    assert_eq!(verified.pay_no(), None);
                    assert_eq!(verified.out_trade_no, opened.transaction().unwrap().out_trade_no);
                    // The same notification for another merchant account is refused.
                    let mut other = wechat_settings("http://127.0.0.1:9".into(), cert, apiv3, &merchant_key);
                    other.mchid = "1900000000".into();
                    let other = WechatGateway::new(other, reqwest::Client::new())
                        .unwrap()
                        .with_clock(Arc::new(FixedClock(now)));
                    assert_eq!(
                        other.open_notification(&request).unwrap_err(),
                        NotificationError::UnknownAccount
                    );
                }
                Err(err) if id(v).contains("stale_clock") => assert_eq!(err, NotificationError::StaleTimestamp),
                Err(err) => assert_eq!(err, NotificationError::BadSignature, "{}", id(v)),
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 4);
}

// ------------------------------------------------------------------------------------------
// Alipay: request signing
// ------------------------------------------------------------------------------------------

fn params_of(v: &Value) -> Vec<(String, String)> {
    v["params"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect()
}

fn pairs(params: &[(String, String)]) -> impl Iterator<Item = (&str, &str)> {
    params.iter().map(|(k, v)| (k.as_str(), v.as_str()))
}

#[test]
fn alipay_request_signing_vectors() {
    let file = load("alipay_rsa2_sign.json");
    let app = &file["keys"]["app_key"];
    // PKCS#1 on a single base64 line, as stored in the SDK repository.
    let key = RsaSigningKey::from_pem(s(app, "private_key_pem")).unwrap();
    let public = RsaVerifyingKey::from_pem(s(app, "public_key_pem")).unwrap();
    let mut checked = 0;
    for (list, vectors) in vector_lists(&file) {
        for v in &vectors {
            let params = params_of(v);
            let content = alipay_crypto::sign_content(pairs(&params), alipay_crypto::REQUEST_EXCLUDED);
            assert_eq!(content, s(v, "expected_sign_content"), "{}", id(v));
            match list.as_str() {
                "vectors" => {
                    if let Some(gbk_sign) = v["derived_signature_gbk_bytes"].as_str() {
                        // The doc example declares charset=GBK: the signed bytes are the GBK
                        // encoding of the content. paywarden only ever sends utf-8, so this
                        // checks the primitive with the content encoded by hand; the UTF-8
                        // signature is the "wrong for GBK" one the vector also records.
                        let (gbk, _, unmappable) = encoding_rs::GBK.encode(&content);
                        assert!(!unmappable);
                        assert_eq!(key.sign(&gbk).unwrap(), gbk_sign);
                        assert_eq!(
                            key.sign(content.as_bytes()).unwrap(),
                            s(v, "derived_signature_utf8_bytes_WRONG_for_charset_GBK")
                        );
                        assert!(public.verify(content.as_bytes(), gbk_sign).is_err());
                    }
                }
                "vectors_derived_for_this_service" => {
                    let sign = alipay_crypto::sign_request(&key, pairs(&params)).unwrap();
                    assert_eq!(sign, s(v, "expected_sign"), "{}", id(v));
                    public.verify(content.as_bytes(), &sign).unwrap();
                    // The example form body decodes to the same parameters plus the sign.
                    let form: Vec<(String, String)> =
                        serde_urlencoded::from_bytes(s(v, "example_form_body").as_bytes()).unwrap();
                    let form_sign = alipay_crypto::find_sign(&form).unwrap();
                    assert_eq!(form_sign, sign);
                    assert_eq!(
                        alipay_crypto::sign_content(pairs(&form), alipay_crypto::REQUEST_EXCLUDED),
                        content
                    );
                }
                other => panic!("unknown vector list {other}"),
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 5);
}

// ------------------------------------------------------------------------------------------
// Alipay: synchronous responses
// ------------------------------------------------------------------------------------------

fn method_of(response_key: &str) -> String {
    response_key.strip_suffix("_response").unwrap().replace('_', ".")
}

#[test]
fn alipay_response_vectors() {
    let file = load("alipay_response_verify.json");
    let fake = RsaVerifyingKey::from_pem(s(&file["keys"]["fake_alipay_key"], "public_key_pem")).unwrap();
    let key_of = |v: &Value| -> RsaVerifyingKey {
        if let Some(pem) = v["alipay_public_key_pem"].as_str() {
            RsaVerifyingKey::from_pem(pem).unwrap()
        } else if let Some(bare) = v["alipay_public_key_base64_no_wrapper"].as_str() {
            RsaVerifyingKey::from_pem(bare).unwrap()
        } else {
            assert!(s(v, "alipay_public_key_ref").starts_with("fake_alipay_key"));
            fake.clone()
        }
    };
    let mut checked = 0;
    for (list, vectors) in vector_lists(&file) {
        for v in &vectors {
            match list.as_str() {
                "vectors" | "vectors_derived_for_this_service" => {
                    let key = key_of(v);
                    let expected_valid = v["expected_valid"].as_bool().unwrap();
                    let content = match v["raw_body"].as_str() {
                        Some(raw) => {
                            let extracted =
                                alipay_crypto::extract_response(raw, &method_of(s(v, "response_key"))).unwrap();
                            if expected_valid {
                                assert_eq!(extracted.sign.as_deref(), Some(s(v, "sign")), "{}", id(v));
                            }
                            extracted.content.to_owned()
                        }
                        // gopay gives only the extracted content.
                        None => s(v, "expected_sign_content").to_owned(),
                    };
                    if let Some(expected) = v["expected_sign_content"].as_str() {
                        assert_eq!(content, expected, "{}", id(v));
                    }
                    let valid = key.verify(content.as_bytes(), s(v, "sign")).is_ok();
                    assert_eq!(valid, expected_valid, "{}", id(v));
                    if valid && list == "vectors_derived_for_this_service" {
                        check_derived_alipay_response(id(v), &content);
                    }
                }
                "vectors_extraction_only" => {
                    let raw = s(v, "raw_body");
                    let result = alipay_crypto::extract_response(raw, &method_of(s(v, "response_key")));
                    match v["expected_sign_content"].as_str() {
                        Some(expected) => {
                            let extracted = result.unwrap();
                            assert_eq!(extracted.content, expected, "{}", id(v));
                            if let Some(sign) = v["expected_sign"].as_str() {
                                // Sandbox signature whose public key is not published: only
                                // the extraction (sign first, then the node) is checkable.
                                assert_eq!(extracted.sign.as_deref(), Some(sign));
                            }
                            if id(v) == "error_response_root" {
                                assert_eq!(extracted.node, "error_response");
                            }
                        }
                        None => assert_eq!(
                            result.unwrap_err(),
                            alipay_crypto::ExtractError::Duplicate("alipay_trade_query_response".into()),
                            "{}",
                            id(v)
                        ),
                    }
                }
                other => panic!("unknown vector list {other}"),
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 16);
}

/// What the derived responses mean once verified.
fn check_derived_alipay_response(vector: &str, content: &str) {
    let status: AlipayResponseStatus = serde_json::from_str(content).unwrap();
    match vector {
        "derived_precreate_success" => {
            let created: AlipayPrecreateResponse = serde_json::from_str(content).unwrap();
            assert_eq!(
                created.qr_code.as_deref(),
                Some("https://qr.alipay.com/bavh4wjlxf12tper3a")
            );
        }
        "derived_query_trade_success" | "derived_query_wait_buyer_pay" => {
            let found: AlipayQueryResponse = serde_json::from_str(content).unwrap();
            assert_eq!(found.total_amount, Some(AlipayAmount::parse("88.88").unwrap()));
        }
        "derived_query_trade_not_exist" => {
            assert_eq!(
                classify_failure(&status).into_query_state().unwrap(),
                TradeState::NotFound
            );
        }
        "derived_close_success" => assert_eq!(status.code, "10000"),
        "derived_close_trade_status_error" => {
            assert_eq!(
                classify_failure(&status).into_close_outcome().unwrap(),
                CloseOutcome::AlreadyPaid
            );
        }
        other => panic!("no meaning check for {other}"),
    }
}

fn alipay_settings(gateway_url: String, app_id: &str) -> AlipaySettings {
    let sign_file = load("alipay_rsa2_sign.json");
    let response_file = load("alipay_response_verify.json");
    AlipaySettings {
        app_id: app_id.into(),
        app_private_key_pem: SecretString::from(s(&sign_file["keys"]["app_key"], "private_key_pem").to_owned()),
        alipay_public_key_pem: s(&response_file["keys"]["fake_alipay_key"], "public_key_pem").to_owned(),
        gateway_url,
        notify_url: "https://merchant.example/webhooks/alipay".into(),
        seller_id: None,
    }
}

/// The derived responses through the whole gateway path: extraction, verification, mapping.
#[tokio::test]
async fn alipay_gateway_reads_the_derived_responses() {
    let file = load("alipay_response_verify.json");
    let vectors = file["vectors_derived_for_this_service"].as_array().unwrap();
    let body = |wanted: &str| s(vectors.iter().find(|v| id(v) == wanted).unwrap(), "raw_body").to_owned();
    let pay_no = PayNo::new(20_240_101_000_000_001).unwrap();
    let gateway = |base: String| {
        AlipayGateway::new(
            alipay_settings(format!("{base}/gateway.do"), "2021000000000001"),
            reqwest::Client::new(),
        )
        .unwrap()
    };
    let json = || vec![("Content-Type".to_owned(), "application/json;charset=utf-8".to_owned())];

    let created = gateway(serve_once(200, json(), body("derived_precreate_success")).await)
        .create_qr(&QrRequest {
            pay_no,
            amount: MinorUnit::new(8888).unwrap(),
            currency: Currency::Cny,
            subject: "Iphone6 16G".into(),
            expires_at: Utc::now(),
        })
        .await
        .unwrap();
    assert_eq!(created.code_url, "https://qr.alipay.com/bavh4wjlxf12tper3a");

    let paid = gateway(serve_once(200, json(), body("derived_query_trade_success")).await)
        .query(pay_no)
        .await
        .unwrap();
    match paid.state {
        TradeState::Paid(trade) => {
            assert_eq!(trade.amount, MinorUnit::new(8888).unwrap());
            assert_eq!(trade.provider_txn_id, "2024010122001455611000000001");
        }
        other => panic!("expected paid, got {other:?}"),
    }
    for (vector, state) in [
        ("derived_query_wait_buyer_pay", TradeState::NotPaid),
        ("derived_query_trade_not_exist", TradeState::NotFound),
    ] {
        let got = gateway(serve_once(200, json(), body(vector)).await)
            .query(pay_no)
            .await
            .unwrap();
        assert_eq!(got.state, state, "{vector}");
    }
    for (vector, outcome) in [
        ("derived_close_success", CloseOutcome::Closed),
        ("derived_close_trade_status_error", CloseOutcome::AlreadyPaid),
    ] {
        let got = gateway(serve_once(200, json(), body(vector)).await)
            .close(pay_no)
            .await
            .unwrap();
        assert_eq!(got, outcome, "{vector}");
    }
    let tampered = gateway(serve_once(200, json(), body("derived_precreate_unescaped_slashes_invalid")).await)
        .create_qr(&QrRequest {
            pay_no,
            amount: MinorUnit::new(8888).unwrap(),
            currency: Currency::Cny,
            subject: "Iphone6 16G".into(),
            expires_at: Utc::now(),
        })
        .await;
    assert!(matches!(tampered, Err(actors::gateway::GatewayError::Verification(_))));
}

// ------------------------------------------------------------------------------------------
// Alipay: notifications
// ------------------------------------------------------------------------------------------

#[test]
fn alipay_notification_vectors() {
    let file = load("alipay_notify_verify.json");
    let fake = RsaVerifyingKey::from_pem(s(
        &load("alipay_response_verify.json")["keys"]["fake_alipay_key"],
        "public_key_pem",
    ))
    .unwrap();
    let mut checked = 0;
    for (list, vectors) in vector_lists(&file) {
        assert_eq!(list, "vectors", "unknown vector list {list}");
        for v in &vectors {
            let key = match (
                v["alipay_public_key_pem"].as_str(),
                v["alipay_public_key_base64_no_wrapper"].as_str(),
            ) {
                (Some(pem), _) => RsaVerifyingKey::from_pem(pem).unwrap(),
                (None, Some(bare)) => RsaVerifyingKey::from_pem(bare).unwrap(),
                (None, None) => fake.clone(),
            };
            let excluded = if s(v, "rule").starts_with("V2") {
                alipay_crypto::NOTIFY_V2_EXCLUDED
            } else {
                alipay_crypto::NOTIFY_V1_EXCLUDED
            };
            let params = match v["raw_body"].as_str() {
                Some(raw) => {
                    // Decoded once, exactly as the vector's decoded_params say; passback_params
                    // keeps its own %3D and +.
                    let decoded: Vec<(String, String)> = serde_urlencoded::from_bytes(raw.as_bytes()).unwrap();
                    let expected: BTreeMap<String, String> = v["decoded_params"]
                        .as_object()
                        .unwrap()
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                        .collect();
                    assert_eq!(decoded.iter().cloned().collect::<BTreeMap<_, _>>(), expected);
                    assert_eq!(expected["passback_params"], "merchant+data%3D1");
                    decoded
                }
                None => params_of(v),
            };
            if let Some(expected) = v["expected_sign_content"].as_str() {
                assert_eq!(
                    alipay_crypto::sign_content(pairs(&params), excluded),
                    expected,
                    "{}",
                    id(v)
                );
            }
            let valid = alipay_crypto::verify_params(&key, &params, excluded).is_ok();
            assert_eq!(valid, v["expected_valid"].as_bool().unwrap(), "{}", id(v));
            if excluded == alipay_crypto::NOTIFY_V2_EXCLUDED && valid {
                // V2 keeps sign_type; verifying the same message by the V1 rule must fail.
                assert!(alipay_crypto::verify_params(&key, &params, alipay_crypto::NOTIFY_V1_EXCLUDED).is_err());
            }
            if v["raw_body"].is_string() {
                check_alipay_notification_through_gateway(s(v, "raw_body"));
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 7);
}

fn check_alipay_notification_through_gateway(raw: &str) {
    let request = NotificationRequest {
        headers: BTreeMap::from([(
            "content-type".to_owned(),
            "application/x-www-form-urlencoded; charset=utf-8".to_owned(),
        )]),
        body: raw.as_bytes().to_vec(),
    };
    let gateway = AlipayGateway::new(
        alipay_settings("http://127.0.0.1:9/gateway.do".into(), "2021000000000001"),
        reqwest::Client::new(),
    )
    .unwrap();
    let verified = gateway.verify_notification(&request).unwrap();
    assert_eq!(verified.event_id, "2024010100222120031055611000000001");
    assert_eq!(verified.pay_no(), Some(PayNo::new(20_240_101_000_000_001).unwrap()));
    match verified.subject {
        NotificationSubject::Trade(TradeState::Paid(paid)) => {
            assert_eq!(paid.amount, MinorUnit::new(8888).unwrap());
            assert_eq!(paid.paid_at.to_rfc3339(), "2024-01-01T04:01:02+00:00");
        }
        other => panic!("expected paid, got {other:?}"),
    }
    assert_eq!(verified.raw["passback_params"], "merchant+data%3D1");

    // Another app id: the signature is fine, the account is not ours.
    let other = AlipayGateway::new(
        alipay_settings("http://127.0.0.1:9/gateway.do".into(), "2021000000000002"),
        reqwest::Client::new(),
    )
    .unwrap();
    assert_eq!(
        other.verify_notification(&request).unwrap_err(),
        NotificationError::UnknownAccount
    );

    // Decoding twice (a classic framework mistake) corrupts passback_params and the signature
    // no longer matches.
    let once: Vec<(String, String)> = serde_urlencoded::from_bytes(raw.as_bytes()).unwrap();
    let twice: String = serde_urlencoded::to_string(
        once.iter()
            .map(|(k, v)| {
                let decoded: Vec<(String, String)> = serde_urlencoded::from_str(&format!("x={v}")).unwrap();
                (k.clone(), decoded[0].1.clone())
            })
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert_eq!(
        gateway
            .verify_notification(&NotificationRequest {
                headers: BTreeMap::new(),
                body: twice.into_bytes(),
            })
            .unwrap_err(),
        NotificationError::BadSignature
    );

    // A duplicated parameter is refused outright.
    let duplicated = format!("{raw}&total_amount=0.01");
    assert!(matches!(
        gateway.verify_notification(&NotificationRequest {
            headers: BTreeMap::new(),
            body: duplicated.into_bytes(),
        }),
        Err(NotificationError::Malformed(_))
    ));
}
