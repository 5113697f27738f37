//! Alipay's trade bill (`alipay.data.dataservice.bill.downloadurl.query`, `bill_type=trade`):
//! a ZIP holding GBK-encoded CSV files, the detail one (业务明细) and a summary (业务明细(汇总)).
//!
//! The detail file as Alipay writes it (real bills of 2017 and 2019): `#` title lines naming
//! the account (`#账号：[<PID>0156]`) and the period (`#起始日期：[2019年09月16日 00:00:00]
//! 终止日期：[...]`), a header, the rows, then `#` footers with the totals (`#交易合计：6笔，
//! 商家实收共0.06元，...`, `#退款合计：4笔，商家实收退款共-0.04元，...`). Cells are separated by
//! commas, and *some* cells end with a TAB (ids, business type, store, operator, ...) as an
//! Excel guard: every cell is trimmed. `业务类型` is `交易` (a payment) or `退款` (a refund, with
//! negative amounts and the request number in `退款批次号/请求号`).
//!
//! Nothing of a file is used unless all of it checks out: its account and day are the ones
//! asked for, every row reads, and its rows add up to its own totals.

use std::io::Read;

use chrono::NaiveDateTime;

use crate::gateway::bill::{
    add_fen, columns, parse_china_time, parse_yuan, signed_fen, yuan_text, BillError, BillExpectation, BillRow,
};

/// The header cell that marks the detail file (the summary file has none).
const DETAIL_MARK: &str = "支付宝交易号";
/// The most files an archive may hold (Alipay sends two).
const MAX_ENTRIES: usize = 16;

/// Finds the detail CSV in the ZIP, decodes it from GBK, and parses it against `expect`,
/// reading at most `max_unzipped` bytes out of the archive.
///
/// # Errors
/// [`BillError`] when the archive does not open, holds no detail file, unzips to more than
/// `max_unzipped`, or its detail file does not read or check out.
pub fn parse_bill_zip(
    bytes: &[u8],
    expect: &BillExpectation<'_>,
    max_unzipped: u64,
) -> Result<Vec<BillRow>, BillError> {
    let unreadable = |err: &dyn std::fmt::Display| BillError::Unreadable(err.to_string());
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|err| unreadable(&err))?;
    if archive.len() > MAX_ENTRIES {
        return Err(BillError::Unreadable(format!(
            "the archive holds {} files, more than {MAX_ENTRIES}",
            archive.len()
        )));
    }
    let mut budget = max_unzipped;
    for index in 0..archive.len() {
        let file = archive.by_index(index).map_err(|err| unreadable(&err))?;
        if !file.is_file() {
            continue;
        }
        // Read through a limit, whatever the entry claims its size is (a bomb lies).
        let mut raw = Vec::new();
        file.take(budget.saturating_add(1))
            .read_to_end(&mut raw)
            .map_err(|err| unreadable(&err))?;
        let read = u64::try_from(raw.len()).unwrap_or(u64::MAX);
        if read > budget {
            return Err(BillError::TooLarge {
                limit: max_unzipped,
                what: " unzipped",
            });
        }
        budget -= read;
        let (text, _, had_errors) = encoding_rs::GBK.decode(&raw);
        if had_errors {
            continue;
        }
        if text.lines().any(|line| line.trim_start().starts_with(DETAIL_MARK)) {
            return parse_detail(&text, expect);
        }
    }
    Err(BillError::Unreadable(
        "the archive holds no detail file (业务明细)".into(),
    ))
}

/// What the `#` lines of a detail file say about it.
#[derive(Default)]
struct Claims {
    account: Option<String>,
    period: Option<(NaiveDateTime, NaiveDateTime)>,
    /// Count and 商家实收 total of payments, then of refunds.
    payments: Option<(u64, Option<i64>)>,
    refunds: Option<(u64, Option<i64>)>,
}

/// The text between `label` and the next `]` (`#账号：[2088...]`).
fn bracketed<'a>(line: &'a str, label: &str) -> Option<&'a str> {
    let rest = &line[line.find(label)? + label.len()..];
    let rest = rest.trim_start().strip_prefix('[')?;
    Some(rest[..rest.find(']')?].trim())
}

/// `2019年09月16日 00:00:00` (as real bills write it) or `2019-09-16 00:00:00`.
fn claimed_time(text: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(text, "%Y年%m月%d日 %H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S"))
        .ok()
}

/// `#交易合计：6笔，商家实收共0.06元，...` -> (6, Some(6 fen)).
fn claimed_total(line: &str, label: &str, money_label: &str) -> Result<Option<(u64, Option<i64>)>, BillError> {
    let Some(at) = line.find(label) else {
        return Ok(None);
    };
    let bad = || BillError::Inconsistent(format!("the footer {line:?} does not read"));
    let rest = &line[at + label.len()..];
    let count: u64 = rest[..rest.find('笔').ok_or_else(bad)?]
        .trim()
        .parse()
        .map_err(|_| bad())?;
    let money = match rest.find(money_label) {
        Some(at) => {
            let rest = &rest[at + money_label.len()..];
            let text = &rest[..rest.find('元').ok_or_else(bad)?];
            Some(signed_fen(text).map_err(|_| bad())?)
        }
        None => None,
    };
    Ok(Some((count, money)))
}

fn read_claim(claims: &mut Claims, line: &str) -> Result<(), BillError> {
    if let Some(account) = bracketed(line, "账号：") {
        claims.account = Some(account.to_owned());
    }
    if let (Some(start), Some(end)) = (bracketed(line, "起始日期："), bracketed(line, "终止日期：")) {
        let bad = || BillError::Inconsistent(format!("the period line {line:?} does not read"));
        claims.period = Some((claimed_time(start).ok_or_else(bad)?, claimed_time(end).ok_or_else(bad)?));
    }
    if let Some(total) = claimed_total(line, "交易合计：", "商家实收共")? {
        claims.payments = Some(total);
    }
    if let Some(total) = claimed_total(line, "退款合计：", "商家实收退款共")? {
        claims.refunds = Some(total);
    }
    Ok(())
}

/// Checks the `#` lines against the day and account asked for.
fn check_claims(claims: &Claims, expect: &BillExpectation<'_>) -> Result<(), BillError> {
    let Some((start, end)) = claims.period else {
        return Err(BillError::Inconsistent(
            "the bill does not say which day it covers (#起始日期 / 终止日期)".into(),
        ));
    };
    let midnight = expect.date.and_time(chrono::NaiveTime::MIN);
    let next = expect.date.succ_opt().map(|day| day.and_time(chrono::NaiveTime::MIN));
    if start != midnight || Some(end) != next {
        return Err(BillError::Inconsistent(format!(
            "the bill covers {start} to {end}, not the day {}",
            expect.date
        )));
    }
    if let Some(pid) = expect.account {
        let Some(account) = claims.account.as_deref() else {
            return Err(BillError::Inconsistent(
                "the bill does not name its account (#账号)".into(),
            ));
        };
        // The bill names the account as the PID followed by its type, `0156`.
        let ours = account == pid || account.strip_prefix(pid) == Some("0156");
        if !ours {
            return Err(BillError::Inconsistent(format!(
                "the bill is of account {account}, not {pid}"
            )));
        }
    }
    Ok(())
}

/// Where the cells that can be checked are: the two times and every amount column
/// (`...（元）`).
struct Layout {
    width: usize,
    name: usize,
    created: usize,
    finished: usize,
    amounts: Vec<usize>,
}

impl Layout {
    fn new(header: &[&str], name: usize, created: usize, finished: usize) -> Self {
        Self {
            width: header.len(),
            name,
            created,
            finished,
            amounts: header
                .iter()
                .enumerate()
                .filter(|(_, cell)| cell.ends_with("（元）"))
                .map(|(at, _)| at)
                .collect(),
        }
    }

    /// Whether `cells` line up with the header: the creation time reads, the completion time
    /// reads or is empty, every amount reads or is empty.
    fn lines_up(&self, cells: &[std::borrow::Cow<'_, str>]) -> bool {
        let is_time = |cell: &str| NaiveDateTime::parse_from_str(cell, "%Y-%m-%d %H:%M:%S").is_ok();
        let cell = |at: usize| cells.get(at).map_or("", AsRef::as_ref);
        is_time(cell(self.created))
            && (cell(self.finished).is_empty() || is_time(cell(self.finished)))
            && self
                .amounts
                .iter()
                .all(|at| cell(*at).is_empty() || signed_fen(cell(*at)).is_ok())
    }
}

/// The cells of one detail row, as many as the header has: split on commas, each trimmed of
/// spaces and the TAB padding. A row with more cells than the header has commas inside its
/// free text; only the product name and the remark (last) may hold them, and the row is read
/// only when exactly one way of giving them the extra cells lines the rest up with the header
/// (times and amounts where they belong). A comma anywhere else, or a row that lines up in no
/// way or in several, fails the row: it is never read with its columns shifted.
fn cells<'a>(line: &'a str, layout: &Layout) -> Result<Vec<std::borrow::Cow<'a, str>>, String> {
    use std::borrow::Cow;
    let raw: Vec<&str> = line
        .split(',')
        .map(|cell| cell.trim_matches(|c: char| c == '\t' || c == ' '))
        .collect();
    let width = layout.width;
    if raw.len() < width || width == 0 {
        return Err(format!("{} cells where the header has {width}", raw.len()));
    }
    let extra = raw.len() - width;
    let name = layout.name;
    let candidate = |shift: usize| -> Vec<Cow<'a, str>> {
        if extra == 0 {
            return raw.iter().map(|cell| Cow::Borrowed(*cell)).collect();
        }
        let mut out: Vec<Cow<'a, str>> = raw[..name].iter().map(|cell| Cow::Borrowed(*cell)).collect();
        out.push(Cow::Owned(raw[name..=name + shift].join(",")));
        out.extend(
            raw[name + shift + 1..width - 1 + shift]
                .iter()
                .map(|cell| Cow::Borrowed(*cell)),
        );
        out.push(Cow::Owned(raw[width - 1 + shift..].join(",")));
        out
    };
    if extra > 0 && name + 1 >= width {
        return Err(format!("{} cells where the header has {width}", raw.len()));
    }
    let mut fits = (0..=extra).map(candidate).filter(|cells| layout.lines_up(cells));
    match (fits.next(), fits.next()) {
        (Some(cells), None) => Ok(cells),
        (None, _) if extra == 0 => Err("a time or amount cell does not read (a comma inside a cell?)".into()),
        (None, _) => Err(format!(
            "{} cells where the header has {width}, and no reading lines them up",
            raw.len()
        )),
        (Some(_), Some(_)) => Err("the commas in the row can be read in more than one way".into()),
    }
}

/// Parses the decoded detail file and checks it against `expect` and its own totals.
///
/// # Errors
/// [`BillError`] naming the missing column, the line that does not read, or what does not
/// check out.
pub fn parse_detail(text: &str, expect: &BillExpectation<'_>) -> Result<Vec<BillRow>, BillError> {
    let text = text.trim_start_matches('\u{feff}');
    let mut claims = Claims::default();
    let mut header: Option<Vec<&str>> = None;
    let mut body = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        if line.trim_start().starts_with('#') {
            read_claim(&mut claims, line)?;
        } else if header.is_none() {
            header = Some(
                line.split(',')
                    .map(|cell| cell.trim_matches(|c: char| c == '\t' || c == ' '))
                    .collect(),
            );
        } else {
            body.push((index + 1, line));
        }
    }
    check_claims(&claims, expect)?;
    let Some(header) = header else {
        return Err(BillError::Inconsistent("the detail file has no header row".into()));
    };
    let [txn, out_trade_no, kind, name, created, finished, amount, received, request_no] = columns(
        &header,
        [
            "支付宝交易号",
            "商户订单号",
            "业务类型",
            "商品名称",
            "创建时间",
            "完成时间",
            "订单金额（元）",
            "商家实收（元）",
            "退款批次号/请求号",
        ],
    )?;
    let layout = Layout::new(&header, name, created, finished);
    let mut rows = Vec::new();
    let (mut payments, mut refunds) = ((0_u64, 0_i64), (0_u64, 0_i64));
    for (line_no, line) in body {
        let problem = |problem: String| BillError::Line { line: line_no, problem };
        let fields = cells(line, &layout).map_err(problem)?;
        let field = |at: usize| fields.get(at).map(AsRef::as_ref).unwrap_or_default();
        let money = || parse_yuan(field(amount)).map(|(_, amount)| amount).map_err(problem);
        let taken = signed_fen(field(received)).map_err(problem)?;
        let required = |at: usize, what: &str| {
            let value = field(at);
            if value.is_empty() {
                Err(problem(format!("the row has no {what}")))
            } else {
                Ok(value.to_owned())
            }
        };
        match field(kind) {
            "交易" => {
                payments = (payments.0 + 1, add_fen(payments.1, taken)?);
                rows.push(BillRow::Payment {
                    out_trade_no: required(out_trade_no, "商户订单号")?,
                    provider_txn_id: required(txn, "支付宝交易号")?,
                    amount: money()?,
                    paid_at: parse_china_time(field(finished)),
                });
            }
            "退款" => {
                refunds = (refunds.0 + 1, add_fen(refunds.1, taken)?);
                let trade = required(out_trade_no, "商户订单号")?;
                rows.push(BillRow::Refund {
                    // A refund made without a request number is keyed by the trade number.
                    out_refund_no: Some(field(request_no))
                        .filter(|no| !no.is_empty())
                        .map_or_else(|| trade.clone(), str::to_owned),
                    out_trade_no: trade,
                    provider_refund_id: None,
                    amount: money()?,
                    // The bill lists refunds that were made.
                    status: "SUCCESS".to_owned(),
                });
            }
            other => return Err(problem(format!("unknown business type {other:?}"))),
        }
    }
    for (what, claimed, counted) in [
        ("payments", claims.payments, payments),
        ("refunds", claims.refunds, refunds),
    ] {
        let Some((count, total)) = claimed else {
            return Err(BillError::Inconsistent(format!(
                "the bill states no total of its {what}"
            )));
        };
        if count != counted.0 || total.is_some_and(|total| total != counted.1) {
            return Err(BillError::Inconsistent(format!(
                "the bill's {what} add up to {} rows, {} yuan; its footer says {count} rows{}",
                counted.0,
                yuan_text(counted.1),
                total
                    .map(|total| format!(", {} yuan", yuan_text(total)))
                    .unwrap_or_default()
            )));
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::Write;

    use chrono::NaiveDate;
    use entities::MinorUnit;

    use super::*;

    const HEADER: &str = "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注";

    /// The shape of a real 2019 detail file (layout and TAB placement as Alipay writes them:
    /// some cells padded, the amounts not, `\r\n`), with our own numbers.
    fn real_shaped(account: &str, day: &str, rows: &[&str], payments: &str, refunds: &str) -> String {
        let date = NaiveDate::parse_from_str(day, "%Y-%m-%d").unwrap();
        let next = date.succ_opt().unwrap();
        let mut text = format!(
            "#支付宝业务明细查询\r\n#账号：[{account}]\r\n#起始日期：[{}]   终止日期：[{}]\r\n#-----------------------------------------业务明细列表----------------------------------------\r\n{HEADER}\r\n",
            date.format("%Y年%m月%d日 00:00:00"),
            next.format("%Y年%m月%d日 00:00:00"),
        );
        for row in rows {
            text.push_str(row);
            text.push_str("\r\n");
        }
        text.push_str(&format!(
            "#-----------------------------------------业务明细列表结束------------------------------------\r\n{payments}\r\n{refunds}\r\n#导出时间：[2019年09月17日 05:46:49]\r\n"
        ));
        text
    }

    const PAYMENT: &str = "2019091622001458860515315453\t,385000000000000001\t,交易\t,下单测试,2019-09-16 10:55:16,2019-09-16 10:55:23,alipay_store\t,alipay_store\t,alipay\t,\t,*津水(602***@qq.com)\t,29.99,29.99,0.00,0.00,0.00,0.00,0.00,,0.00\t,0.00,\t,0.00,0.00,下单测试";
    const REFUND: &str = "2019091622001458860515315453\t,385000000000000001\t,退款\t,下单测试,2019-09-16 10:55:16,2019-09-16 10:56:48,alipay_store\t,alipay_store\t,alipay\t,\t,*津水(602***@qq.com)\t,-10.00,-10.00,0.00,0.00,0.00,0.00,0.00,,0.00\t,0.00,385000000000000009\t,0.00,0.00,下单测试";
    const PAID_LINE: &str = "#交易合计：1笔，商家实收共29.99元，商家优惠共0.00元";
    const REFUNDED_LINE: &str = "#退款合计：1笔，商家实收退款共-10.00元，商家优惠退款共0.00元";

    fn expect(account: Option<&str>) -> BillExpectation<'_> {
        BillExpectation {
            date: NaiveDate::from_ymd_opt(2019, 9, 16).unwrap(),
            account,
        }
    }

    fn zipped(files: &[(&str, &str)]) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        let mut zip = zip::ZipWriter::new(&mut out);
        for (name, text) in files {
            zip.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
            let (bytes, _, _) = encoding_rs::GBK.encode(text);
            zip.write_all(&bytes).unwrap();
        }
        zip.finish().unwrap();
        out.into_inner()
    }

    fn expected_rows() -> Vec<BillRow> {
        vec![
            BillRow::Payment {
                out_trade_no: "385000000000000001".into(),
                provider_txn_id: "2019091622001458860515315453".into(),
                amount: MinorUnit::new(2999).unwrap(),
                paid_at: parse_china_time("2019-09-16 10:55:23"),
            },
            BillRow::Refund {
                out_trade_no: "385000000000000001".into(),
                out_refund_no: "385000000000000009".into(),
                provider_refund_id: None,
                amount: MinorUnit::new(1000).unwrap(),
                status: "SUCCESS".into(),
            },
        ]
    }

    #[test]
    fn a_real_shaped_archive_reads_as_payments_and_refunds_in_fen() {
        let detail = real_shaped(
            "20880000000000010156",
            "2019-09-16",
            &[PAYMENT, REFUND],
            PAID_LINE,
            REFUNDED_LINE,
        );
        let archive = zipped(&[
            (
                "20880000000000010156_20190916_业务明细(汇总).csv",
                "#支付宝业务汇总查询\r\n门店编号,门店名称,交易订单总笔数\r\n",
            ),
            ("20880000000000010156_20190916_业务明细.csv", &detail),
        ]);
        let rows = parse_bill_zip(&archive, &expect(Some("2088000000000001")), MAX_UNZIPPED).unwrap();
        assert_eq!(rows, expected_rows());
    }

    const MAX_UNZIPPED: u64 = 1024 * 1024;

    #[test]
    fn a_tab_after_an_amount_or_a_comma_in_the_product_name_still_reads() {
        let padded = PAYMENT.replace(",29.99,29.99,", ",29.99\t,29.99\t,");
        let comma = REFUND.replace("下单测试,2019", "Rust, 2nd edition,2019");
        let detail = real_shaped(
            "20880000000000010156",
            "2019-09-16",
            &[&padded, &comma],
            PAID_LINE,
            REFUNDED_LINE,
        );
        assert_eq!(parse_detail(&detail, &expect(None)).unwrap(), expected_rows());
    }

    #[test]
    fn a_file_of_another_account_or_day_or_that_does_not_add_up_is_refused() {
        let good =
            |account: &str, day: &str, paid: &str| real_shaped(account, day, &[PAYMENT, REFUND], paid, REFUNDED_LINE);
        let inconsistent = |text: String, expectation: BillExpectation<'_>| match parse_detail(&text, &expectation) {
            Err(BillError::Inconsistent(why)) => why,
            other => panic!("expected an inconsistency, got {other:?}"),
        };
        let why = inconsistent(
            good("20889999999999990156", "2019-09-16", PAID_LINE),
            expect(Some("2088000000000001")),
        );
        assert!(why.contains("account 20889999999999990156"), "{why}");
        let why = inconsistent(good("20880000000000010156", "2019-09-15", PAID_LINE), expect(None));
        assert!(why.contains("not the day 2019-09-16"), "{why}");
        let why = inconsistent(
            good(
                "20880000000000010156",
                "2019-09-16",
                "#交易合计：2笔，商家实收共29.99元，商家优惠共0.00元",
            ),
            expect(None),
        );
        assert!(why.contains("footer says 2 rows"), "{why}");
        let why = inconsistent(
            good(
                "20880000000000010156",
                "2019-09-16",
                "#交易合计：1笔，商家实收共39.99元，商家优惠共0.00元",
            ),
            expect(None),
        );
        assert!(why.contains("39.99"), "{why}");
        let undated = good("20880000000000010156", "2019-09-16", PAID_LINE).replace("#起始日期", "#日期");
        assert!(inconsistent(undated, expect(None)).contains("which day"));
    }

    #[test]
    fn a_comma_outside_the_product_name_and_remark_fails_the_row_instead_of_shifting_it() {
        // In the coupon name (券名称): amounts and times would still read, the refund number
        // would not be where the header says.
        let coupon = REFUND.replace(",0.00,,0.00\t,", ",0.00,满100减10,限新客,0.00\t,");
        assert_ne!(coupon, REFUND);
        // In the counterparty: the amounts would shift.
        let counterparty = PAYMENT.replace("*津水(602***@qq.com)", "*津水,(602***@qq.com)");
        for row in [&coupon, &counterparty] {
            let detail = real_shaped(
                "20880000000000010156",
                "2019-09-16",
                &[PAYMENT, row],
                PAID_LINE,
                REFUNDED_LINE,
            );
            let detail = if row.contains("退款") {
                detail
            } else {
                real_shaped(
                    "20880000000000010156",
                    "2019-09-16",
                    &[row, REFUND],
                    PAID_LINE,
                    REFUNDED_LINE,
                )
            };
            assert!(
                matches!(parse_detail(&detail, &expect(None)), Err(BillError::Line { .. })),
                "{row}"
            );
        }
    }

    #[test]
    fn a_row_that_does_not_read_fails_the_bill_instead_of_being_dropped() {
        let short = PAYMENT.split(',').take(10).collect::<Vec<_>>().join(",");
        let strange = PAYMENT.replace("交易\t", "冻结\t");
        let no_amount = PAYMENT.replace(",29.99,29.99,", ",,29.99,");
        for row in [short, strange, no_amount] {
            let detail = real_shaped(
                "20880000000000010156",
                "2019-09-16",
                &[&row, REFUND],
                PAID_LINE,
                REFUNDED_LINE,
            );
            assert!(
                matches!(
                    parse_detail(&detail, &expect(None)),
                    Err(BillError::Line { line: 6, .. })
                ),
                "{row}"
            );
        }
    }

    #[test]
    fn an_archive_without_a_detail_file_or_unzipping_beyond_the_cap_is_refused() {
        let archive = zipped(&[("summary.csv", "#only a title\r\n")]);
        assert!(matches!(
            parse_bill_zip(&archive, &expect(None), MAX_UNZIPPED),
            Err(BillError::Unreadable(_))
        ));
        assert!(matches!(
            parse_bill_zip(b"not a zip", &expect(None), MAX_UNZIPPED),
            Err(BillError::Unreadable(_))
        ));
        // A few KB that unzip to 4 MB.
        let bomb = zipped(&[("a.csv", &"0".repeat(4 * 1024 * 1024))]);
        assert!(bomb.len() < 64 * 1024);
        assert!(matches!(
            parse_bill_zip(&bomb, &expect(None), MAX_UNZIPPED),
            Err(BillError::TooLarge { .. })
        ));
    }
}
