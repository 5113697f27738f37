//! WeChat Pay's trade bill (`GET /v3/bill/tradebill?bill_type=ALL`): a UTF-8 CSV whose detail
//! and summary fields each start with a backtick (so spreadsheets keep long numbers as text),
//! amounts in yuan. Columns are found by their header names (old merchants have other column
//! orders). Real files start with a UTF-8 BOM and end lines with CRLF (the announced SHA-1 is
//! of those bytes); the summary row is checked against the rows.

use sha1::{Digest, Sha1};

use crate::gateway::bill::{
    add_fen, columns, parse_china_time, parse_yuan, yuan_text, BillError, BillExpectation, BillRow,
};

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
/// rows (`REVOKED`) moved no money and are left out. The file is used only when all of it
/// checks out against `expect` and itself: every row of the merchant account and the day
/// asked for, and the summary row matching the rows (count, settled total, refunded total).
///
/// # Errors
/// [`BillError`] naming the missing column, the line that does not read, or what does not
/// check out.
pub fn parse_trade_bill(text: &str, expect: &BillExpectation<'_>) -> Result<Vec<BillRow>, BillError> {
    let text = text.trim_start_matches('\u{feff}');
    let mut lines = text.lines().map(|line| line.trim_end_matches('\r')).enumerate();
    let header: Vec<&str> = loop {
        match lines.next() {
            Some((_, line)) if line.trim().is_empty() => continue,
            Some((_, line)) => break line.split(',').collect(),
            None => return Ok(Vec::new()),
        }
    };
    let [time, account, txn, out_trade_no, state, refund_id, out_refund_no, refund_status] = columns(
        &header,
        [
            "交易时间",
            "商户号",
            "微信订单号",
            "商户订单号",
            "交易状态",
            "微信退款单号",
            "商户退款单号",
            "退款状态",
        ],
    )?;
    let [settled, refunded] = columns(&header, ["应结订单金额", "退款金额"])?;
    // `订单金额` is what the buyer was charged; old bills only have `应结订单金额`.
    let amount = columns(&header, ["订单金额"]).map_or(settled, |[at]| at);
    let refund_amount = columns(&header, ["申请退款金额"]).map_or(refunded, |[at]| at);
    let mut rows = Vec::new();
    let (mut count, mut settled_total, mut refunded_total) = (0_u64, 0_i64, 0_i64);
    let mut summary = None;
    while let Some((index, line)) = lines.next() {
        if line.trim().is_empty() {
            continue;
        }
        // Every field starts with a backtick: split on ",`", so a comma inside a field (a
        // product name) stays in it.
        let fields: Vec<&str> = line
            .split(",`")
            .map(|field| field.trim().trim_start_matches('`'))
            .collect();
        if line.trim_start().starts_with(SUMMARY_HEADER) {
            summary = Some((line.split(',').map(str::trim).collect::<Vec<_>>(), lines.next()));
            break;
        }
        let field = |at: usize| fields.get(at).copied().unwrap_or_default();
        let problem = |problem: String| BillError::Line {
            line: index + 1,
            problem,
        };
        if fields.len() != header.len() {
            return Err(problem(format!(
                "{} cells where the header has {}",
                fields.len(),
                header.len()
            )));
        }
        let money = |at: usize| parse_yuan(field(at)).map(|(_, amount)| amount).map_err(&problem);
        if let Some(mchid) = expect.account {
            if field(account) != mchid {
                return Err(BillError::Inconsistent(format!(
                    "line {}: a row of merchant {}, not {mchid}",
                    index + 1,
                    field(account)
                )));
            }
        }
        let at = parse_china_time(field(time)).ok_or_else(|| problem(format!("{:?} is not a time", field(time))))?;
        let day = at.with_timezone(&super::transformers::china_offset()).date_naive();
        if day != expect.date {
            return Err(BillError::Inconsistent(format!(
                "line {}: a row of {day}, not of the day {}",
                index + 1,
                expect.date
            )));
        }
        count += 1;
        settled_total = add_fen(settled_total, money(settled)?.get())?;
        refunded_total = add_fen(refunded_total, money(refunded)?.get())?;
        match field(state) {
            "SUCCESS" => rows.push(BillRow::Payment {
                out_trade_no: field(out_trade_no).to_owned(),
                provider_txn_id: field(txn).to_owned(),
                amount: money(amount)?,
                paid_at: Some(at),
            }),
            "REFUND" => rows.push(BillRow::Refund {
                out_trade_no: field(out_trade_no).to_owned(),
                out_refund_no: field(out_refund_no).to_owned(),
                provider_refund_id: Some(field(refund_id).to_owned()).filter(|id| !id.is_empty()),
                amount: money(refund_amount)?,
                status: field(refund_status).to_owned(),
            }),
            "REVOKED" | "CLOSED" | "NOTPAY" | "PAYERROR" => {}
            other => return Err(problem(format!("unknown trade state {other:?}"))),
        }
    }
    let Some((summary_header, Some((index, values)))) = summary else {
        return Err(BillError::Inconsistent(
            "the bill has no summary row (总交易单数 ...)".into(),
        ));
    };
    let values: Vec<&str> = values
        .split(',')
        .map(|cell| cell.trim().trim_start_matches('`'))
        .collect();
    let claimed = |name: &str| {
        summary_header
            .iter()
            .position(|cell| *cell == name)
            .and_then(|at| values.get(at).copied())
    };
    let bad = |problem: String| BillError::Line {
        line: index + 1,
        problem,
    };
    let claimed_count: u64 = claimed(SUMMARY_HEADER)
        .unwrap_or_default()
        .parse()
        .map_err(|_| bad("the summary's 总交易单数 does not read".into()))?;
    let mut checks = vec![("rows", claimed_count.to_string(), count.to_string())];
    for (name, total) in [("应结订单总金额", settled_total), ("退款总金额", refunded_total)] {
        if let Some(text) = claimed(name) {
            let claimed = parse_yuan(text).map_err(&bad)?.1.get();
            checks.push((name, yuan_text(claimed), yuan_text(total)));
        }
    }
    for (what, claimed, counted) in checks {
        if claimed != counted {
            return Err(BillError::Inconsistent(format!(
                "the bill's rows add up to {counted} {what}, its summary says {claimed}"
            )));
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use chrono::NaiveDate;
    use entities::MinorUnit;

    use super::*;

    fn expect(account: Option<&str>) -> BillExpectation<'_> {
        BillExpectation {
            date: NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
            account,
        }
    }

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
        let rows = parse_trade_bill(BILL, &expect(Some("1900000001"))).unwrap();
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
            parse_trade_bill("交易时间,商户订单号\n`x,`y\n", &expect(None)).unwrap_err(),
            BillError::MissingColumn("商户号")
        );
        assert_eq!(
            parse_china_time("2026-11-30 13:51:31").unwrap().to_rfc3339(),
            "2026-11-30T05:51:31+00:00"
        );
        let bad = BILL.replacen("`0.60%,`29.99,", "`0.60%,`29.9x,", 1);
        assert_ne!(bad, BILL);
        assert!(matches!(
            parse_trade_bill(&bad, &expect(None)),
            Err(BillError::Line { line: 2, .. })
        ));
    }

    #[test]
    fn a_bill_of_another_merchant_or_day_or_whose_rows_do_not_match_its_summary_is_refused() {
        let inconsistent = |text: &str, expectation: BillExpectation<'_>| match parse_trade_bill(text, &expectation) {
            Err(BillError::Inconsistent(why)) => why,
            other => panic!("expected an inconsistency, got {other:?}"),
        };
        let why = inconsistent(BILL, expect(Some("1900000002")));
        assert!(why.contains("merchant 1900000001, not 1900000002"), "{why}");
        let other_day = BillExpectation {
            date: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
            account: None,
        };
        assert!(inconsistent(BILL, other_day).contains("not of the day 2026-12-01"));
        // A row added (or removed) without the summary following.
        let added = BILL.replacen("总交易单数", "`2026-11-30 16:00:00,`wx0001,`1900000001,`0,`,`4200009,`385000000000000003,`oUser,`NATIVE,`SUCCESS,`OTHERS,`CNY,`5.00,`0.00,`0,`0,`0.00,`0.00,`,`,`Extra,`,`0.03000,`0.60%,`5.00,`0.00,`\r\n总交易单数", 1);
        assert!(inconsistent(&added, expect(None)).contains("4 rows, its summary says 3"));
        let summary_fixed = added.replacen("`3,`29.99", "`4,`29.99", 1);
        assert!(inconsistent(&summary_fixed, expect(None)).contains("34.99 应结订单总金额, its summary says 29.99"));
        let changed = BILL.replacen("`10.00,`0.00,`ORIGINAL", "`11.00,`0.00,`ORIGINAL", 1);
        assert!(inconsistent(&changed, expect(None)).contains("退款总金额"));
        let no_summary = &BILL[..BILL.find("总交易单数").unwrap()];
        assert!(inconsistent(no_summary, expect(None)).contains("no summary"));
    }

    #[test]
    fn the_digest_is_sha1_of_the_bytes_compared_without_case() {
        let digest = hex::encode(Sha1::digest(BILL.as_bytes()));
        assert!(check_digest(BILL.as_bytes(), &digest.to_uppercase()).is_ok());
        assert!(matches!(check_digest(b"other", &digest), Err(BillError::Digest { .. })));
    }
}
