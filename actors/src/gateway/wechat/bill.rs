//! WeChat Pay's trade bill (`GET /v3/bill/tradebill?bill_type=ALL`): a UTF-8 CSV whose detail
//! and summary fields each start with a backtick (so spreadsheets keep long numbers as text),
//! amounts in yuan. Columns are found by their header names (old merchants have other column
//! orders); the summary part is skipped; a BOM and `\r` are tolerated.

use sha1::{Digest, Sha1};

use crate::gateway::bill::{columns, parse_china_time, parse_yuan, BillError, BillRow};

/// The first cell of the summary header, where the detail rows end.
const SUMMARY_HEADER: &str = "总交易单数";

/// Checks the file against the SHA-1 WeChat announced with its download URL.
///
/// # Errors
/// [`BillError::Digest`] when they differ.
pub fn check_digest(bytes: &[u8], expected_hex: &str) -> Result<(), BillError> {
    let actual = hex::encode(Sha1::digest(bytes));
    if actual.eq_ignore_ascii_case(expected_hex.trim()) {
        Ok(())
    } else {
        Err(BillError::Digest {
            expected: expected_hex.to_owned(),
            actual,
        })
    }
}

/// Parses an `ALL` trade bill: `SUCCESS` rows are payments, `REFUND` rows refunds; other
/// rows (`REVOKED`) moved no money and are left out.
///
/// # Errors
/// [`BillError`] naming the missing column or the line that does not read.
pub fn parse_trade_bill(text: &str) -> Result<Vec<BillRow>, BillError> {
    let text = text.trim_start_matches('\u{feff}');
    let mut lines = text.lines().map(|line| line.trim_end_matches('\r')).enumerate();
    let header: Vec<&str> = loop {
        match lines.next() {
            Some((_, line)) if line.trim().is_empty() => continue,
            Some((_, line)) => break line.split(',').collect(),
            None => return Ok(Vec::new()),
        }
    };
    let [time, txn, out_trade_no, state, refund_id, out_refund_no, refund_status] = columns(
        &header,
        [
            "交易时间",
            "微信订单号",
            "商户订单号",
            "交易状态",
            "微信退款单号",
            "商户退款单号",
            "退款状态",
        ],
    )?;
    // `订单金额` is what the buyer was charged; old bills only have `应结订单金额`.
    let amount = columns(&header, ["订单金额"]).or_else(|_| columns(&header, ["应结订单金额"]))?[0];
    let refund_amount = columns(&header, ["申请退款金额"]).or_else(|_| columns(&header, ["退款金额"]))?[0];
    let mut rows = Vec::new();
    for (index, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        // Every field starts with a backtick: split on ",`", so a comma inside a field (a
        // product name) stays in it.
        let fields: Vec<&str> = line
            .split(",`")
            .map(|field| field.trim().trim_start_matches('`'))
            .collect();
        if fields
            .first()
            .is_some_and(|first| first.trim_start_matches('\u{feff}') == SUMMARY_HEADER)
        {
            break;
        }
        let field = |at: usize| fields.get(at).copied().unwrap_or_default();
        let problem = |problem: String| BillError::Line {
            line: index + 1,
            problem,
        };
        let money = |at: usize| parse_yuan(field(at)).map(|(_, amount)| amount).map_err(&problem);
        match field(state) {
            "SUCCESS" => rows.push(BillRow::Payment {
                out_trade_no: field(out_trade_no).to_owned(),
                provider_txn_id: field(txn).to_owned(),
                amount: money(amount)?,
                paid_at: parse_china_time(field(time)),
            }),
            "REFUND" => rows.push(BillRow::Refund {
                out_trade_no: field(out_trade_no).to_owned(),
                out_refund_no: field(out_refund_no).to_owned(),
                provider_refund_id: Some(field(refund_id).to_owned()).filter(|id| !id.is_empty()),
                amount: money(refund_amount)?,
                status: field(refund_status).to_owned(),
            }),
            _ => {}
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use entities::MinorUnit;

    use super::*;

    /// The documented `ALL` layout with a payment, a refund of part of it, a revoked row, and
    /// the summary (sample row shapes from the documentation, numbers our own).
    const BILL: &str = "\u{feff}交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注\r
`2026-11-30 13:51:31,`wx0001,`1900000001,`0,`,`4200001,`385000000000000001,`oUser,`NATIVE,`SUCCESS,`OTHERS,`CNY,`29.99,`0.00,`0,`0,`0.00,`0.00,`,`,`Rust course, 2nd edition,`,`0.18000,`0.60%,`29.99,`0.00,`\r
`2026-11-30 14:00:00,`wx0001,`1900000001,`0,`,`4200001,`385000000000000001,`oUser,`NATIVE,`REFUND,`OTHERS,`CNY,`0.00,`0.00,`5030001,`385000000000000009,`10.00,`0.00,`ORIGINAL,`SUCCESS,`Rust course,`,`-0.06000,`0.60%,`0.00,`10.00,`\r
`2026-11-30 15:00:00,`wx0001,`1900000001,`0,`,`4200002,`385000000000000002,`oUser,`MICROPAY,`REVOKED,`OTHERS,`CNY,`0.00,`0.00,`0,`0,`0.00,`0.00,`,`,`Other,`,`0.00000,`0.60%,`0.00,`0.00,`\r
总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额\r
`3,`29.99,`10.00,`0.00,`0.12000,`29.99,`10.00\r
";

    #[test]
    fn an_all_bill_reads_as_payments_and_refunds_in_fen() {
        let rows = parse_trade_bill(BILL).unwrap();
        assert_eq!(
            rows,
            vec![
                BillRow::Payment {
                    out_trade_no: "385000000000000001".into(),
                    provider_txn_id: "4200001".into(),
                    amount: MinorUnit::new(2999).unwrap(),
                    paid_at: parse_china_time("2026-11-30 13:51:31"),
                },
                BillRow::Refund {
                    out_trade_no: "385000000000000001".into(),
                    out_refund_no: "385000000000000009".into(),
                    provider_refund_id: Some("5030001".into()),
                    amount: MinorUnit::new(1000).unwrap(),
                    status: "SUCCESS".into(),
                },
            ]
        );
    }

    #[test]
    fn a_bill_without_a_needed_column_or_with_a_bad_amount_is_refused() {
        assert_eq!(
            parse_trade_bill("交易时间,商户订单号\n`x,`y\n").unwrap_err(),
            BillError::MissingColumn("微信订单号")
        );
        assert_eq!(
            parse_china_time("2026-11-30 13:51:31").unwrap().to_rfc3339(),
            "2026-11-30T05:51:31+00:00"
        );
        let bad = BILL.replacen("`0.60%,`29.99,", "`0.60%,`29.9x,", 1);
        assert_ne!(bad, BILL);
        assert!(matches!(parse_trade_bill(&bad), Err(BillError::Line { line: 2, .. })));
    }

    #[test]
    fn the_digest_is_sha1_of_the_bytes_compared_without_case() {
        let digest = hex::encode(Sha1::digest(BILL.as_bytes()));
        assert!(check_digest(BILL.as_bytes(), &digest.to_uppercase()).is_ok());
        assert!(matches!(check_digest(b"other", &digest), Err(BillError::Digest { .. })));
    }
}
