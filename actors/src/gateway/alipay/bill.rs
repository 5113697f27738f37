//! Alipay's trade bill (`alipay.data.dataservice.bill.downloadurl.query`, `bill_type=trade`):
//! a ZIP holding GBK-encoded CSV files, the detail one (业务明细) and a summary (业务明细(汇总)).
//! In the detail file, lines starting with `#` are titles and footers, the first other line
//! is the header, and fields are padded with tabs; `业务类型` is `交易` (a payment) or `退款`
//! (a refund, with negative amounts and the request number in `退款批次号/请求号`).

use std::io::Read;

use crate::gateway::bill::{columns, parse_china_time, parse_yuan, BillError, BillRow};

/// The header cell that marks the detail file (the summary file has none).
const DETAIL_MARK: &str = "支付宝交易号";

/// Finds the detail CSV in the ZIP, decodes it from GBK, and parses it.
///
/// # Errors
/// [`BillError`] when the archive does not open, holds no detail file, or a line does not read.
pub fn parse_bill_zip(bytes: &[u8]) -> Result<Vec<BillRow>, BillError> {
    let unreadable = |err: &dyn std::fmt::Display| BillError::Unreadable(err.to_string());
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|err| unreadable(&err))?;
    for index in 0..archive.len() {
        let mut file = archive.by_index(index).map_err(|err| unreadable(&err))?;
        if !file.is_file() {
            continue;
        }
        let mut raw = Vec::new();
        file.read_to_end(&mut raw).map_err(|err| unreadable(&err))?;
        let (text, _, had_errors) = encoding_rs::GBK.decode(&raw);
        if had_errors {
            continue;
        }
        if text.lines().any(|line| line.trim_start().starts_with(DETAIL_MARK)) {
            return parse_detail(&text);
        }
    }
    Err(BillError::Unreadable(
        "the archive holds no detail file (业务明细)".into(),
    ))
}

/// Parses the decoded detail file.
///
/// # Errors
/// [`BillError`] naming the missing column or the line that does not read.
pub fn parse_detail(text: &str) -> Result<Vec<BillRow>, BillError> {
    let mut lines = text
        .lines()
        .map(|line| line.trim_end_matches('\r'))
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty() && !line.trim_start().starts_with('#'));
    let Some((_, header)) = lines.next() else {
        return Ok(Vec::new());
    };
    let header: Vec<&str> = header.split(',').map(str::trim).collect();
    let [txn, out_trade_no, kind, finished, amount, request_no] = columns(
        &header,
        [
            "支付宝交易号",
            "商户订单号",
            "业务类型",
            "完成时间",
            "订单金额（元）",
            "退款批次号/请求号",
        ],
    )?;
    let mut rows = Vec::new();
    for (index, line) in lines {
        // Every field is padded with a tab: split on "\t,", so a comma inside a field (a
        // product name) stays in it; a file without the padding splits on commas.
        let fields: Vec<&str> = if line.contains("\t,") {
            line.split("\t,").map(str::trim).collect()
        } else {
            line.split(',').map(str::trim).collect()
        };
        let field = |at: usize| fields.get(at).copied().unwrap_or_default();
        let money = || {
            parse_yuan(field(amount))
                .map(|(_, amount)| amount)
                .map_err(|problem| BillError::Line {
                    line: index + 1,
                    problem,
                })
        };
        match field(kind) {
            "交易" => rows.push(BillRow::Payment {
                out_trade_no: field(out_trade_no).to_owned(),
                provider_txn_id: field(txn).to_owned(),
                amount: money()?,
                paid_at: parse_china_time(field(finished)),
            }),
            "退款" => rows.push(BillRow::Refund {
                out_trade_no: field(out_trade_no).to_owned(),
                // A refund made without a request number is keyed by the trade number.
                out_refund_no: Some(field(request_no))
                    .filter(|no| !no.is_empty())
                    .unwrap_or(field(out_trade_no))
                    .to_owned(),
                provider_refund_id: None,
                amount: money()?,
                // The bill lists refunds that were made.
                status: "SUCCESS".to_owned(),
            }),
            _ => {}
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::Write;

    use entities::MinorUnit;

    use super::*;

    const DETAIL: &str = "#支付宝业务明细查询\r
#账号：[20880000000000010156]\r
#起始日期：[2026年11月30日 00:00:00]   终止日期：[2026年12月01日 00:00:00]\r
#-----------------------------------------业务明细列表----------------------------------------\r
支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注\r
2026113022001400001\t,385000000000000001\t,交易\t,Rust course, 2nd edition\t,2026-11-30 10:00:00\t,2026-11-30 10:00:05\t,\t,\t,\t,\t,sim***@example.com\t,29.99\t,29.99\t,0.00\t,0.00\t,0.00\t,0.00\t,0.00\t,\t,0.00\t,0.00\t,\t,-0.18\t,0.00\t,\t\r
2026113022001400001\t,385000000000000001\t,退款\t,Rust course\t,2026-11-30 11:00:00\t,2026-11-30 11:00:01\t,\t,\t,\t,\t,sim***@example.com\t,-10.00\t,-10.00\t,0.00\t,0.00\t,0.00\t,0.00\t,0.00\t,\t,0.00\t,0.00\t,385000000000000009\t,0.06\t,0.00\t,\t\r
#-----------------------------------------业务明细列表结束------------------------------------\r
#交易合计：1笔，商家实收共29.99元，商家优惠共0.00元\r
#退款合计：1笔，商家实收退款共-10.00元，商家优惠退款共0.00元\r
#导出时间：[2026年12月01日 09:00:00]\r
";

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

    #[test]
    fn the_detail_file_of_the_archive_reads_as_payments_and_refunds_in_fen() {
        let archive = zipped(&[
            (
                "20880000000000010156_20261130_业务明细(汇总).csv",
                "#支付宝业务汇总查询\r\n门店编号,门店名称,交易订单总笔数\r\n",
            ),
            ("20880000000000010156_20261130_业务明细.csv", DETAIL),
        ]);
        let rows = parse_bill_zip(&archive).unwrap();
        assert_eq!(
            rows,
            vec![
                BillRow::Payment {
                    out_trade_no: "385000000000000001".into(),
                    provider_txn_id: "2026113022001400001".into(),
                    amount: MinorUnit::new(2999).unwrap(),
                    paid_at: parse_china_time("2026-11-30 10:00:05"),
                },
                BillRow::Refund {
                    out_trade_no: "385000000000000001".into(),
                    out_refund_no: "385000000000000009".into(),
                    provider_refund_id: None,
                    amount: MinorUnit::new(1000).unwrap(),
                    status: "SUCCESS".into(),
                },
            ]
        );
    }

    #[test]
    fn an_archive_without_a_detail_file_is_refused() {
        let archive = zipped(&[("summary.csv", "#only a title\r\n")]);
        assert!(matches!(parse_bill_zip(&archive), Err(BillError::Unreadable(_))));
        assert!(matches!(parse_bill_zip(b"not a zip"), Err(BillError::Unreadable(_))));
    }
}
