//! The reader's tests: whole exports through `start`, read back batch by batch.

use super::*;
use datafusion::arrow::array::{Array, AsArray};

fn def() -> &'static TableDefinition {
    crate::catalog::built_in("shopify_configuration")
}

const GOOD: &str = "a1,shop.myshopify.com,APP,True,False,3,\"[0, 4]\",true,false,1,0,2.0,True,False,True,False,True,False,shopify_,False,app_store,2019-04-01";

fn header() -> String {
    def().export_columns().map(|c| c.name.as_str()).collect::<Vec<_>>().join(",")
}

fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2019, 4, 1).unwrap()
}

#[tokio::test]
async fn a_consumer_that_stops_early_does_not_hang_the_reader() {
    // Far more chunks than the queues between the reading thread and the parsers hold.
    let mut input = header();
    input.push('\n');
    for i in 0..400_000 {
        input.push_str(&GOOD.replacen("a1,", &format!("s{i},"), 1));
        input.push('\n');
    }
    let (mut rx, handle) = start(def(), day(), "big.csv".into(), Box::new(std::io::Cursor::new(input.into_bytes())));
    assert!(rx.recv().await.is_some());
    drop(rx); // A later stage failed.
    let finished = tokio::time::timeout(std::time::Duration::from_secs(60), handle).await;
    assert!(finished.is_ok(), "the reader is still blocked a minute after its consumer went away");
}

#[tokio::test]
async fn the_lines_are_estimated_from_the_first_chunk_before_a_batch_is_sent() {
    let export = |lines: usize, width: usize| {
        let mut input = header();
        input.push('\n');
        for i in 0..lines {
            input.push_str(&GOOD.replacen("a1,", &format!("s{i:0width$},"), 1));
            input.push('\n');
        }
        input.into_bytes()
    };
    // Smaller than a chunk: the count is exact (the header is a line).
    let small = export(1_000, 6);
    let expected = ExpectedLines::of_size(Some(small.len() as u64));
    let (mut rx, handle) =
        start_sized(def(), day(), "t.csv".into(), Box::new(std::io::Cursor::new(small)), expected.clone());
    assert!(rx.recv().await.is_some());
    assert_eq!(expected.get(), Some(1_001), "known when the first batch comes");
    while rx.recv().await.is_some() {}
    handle.await.unwrap().unwrap();
    // Several chunks (lines of one width, the header's aside): within 0.1%.
    let big = export(200_000, 6);
    let expected = ExpectedLines::of_size(Some(big.len() as u64));
    let (mut rx, handle) =
        start_sized(def(), day(), "t.csv".into(), Box::new(std::io::Cursor::new(big)), expected.clone());
    while rx.recv().await.is_some() {}
    handle.await.unwrap().unwrap();
    let estimate = expected.get().unwrap();
    assert!(estimate.abs_diff(200_001) <= 200, "{estimate}");
    // Blank lines first: the estimate stays within what lines of every
    // column could number (a byte a column at least).
    let columns = def().export_columns().count();
    let rows = export(10, 2);
    let header_end = rows.iter().position(|b| *b == b'\n').unwrap() + 1;
    let mut blank_first = rows[..header_end].to_vec();
    blank_first.extend(vec![b'\n'; 1 << 20]);
    blank_first.extend(&rows[header_end..]);
    let expected = ExpectedLines::of_size(Some(blank_first.len() as u64));
    let (mut rx, handle) = start_sized(
        def(),
        day(),
        "t.csv".into(),
        Box::new(std::io::Cursor::new(blank_first.clone())),
        expected.clone(),
    );
    while rx.recv().await.is_some() {}
    handle.await.unwrap().unwrap();
    assert_eq!(expected.get(), Some(blank_first.len() as u64 / columns as u64 + 1));
    // No size (a compressed export): no estimate.
    let no_size = ExpectedLines::of_size(None);
    let (mut rx, handle) =
        start_sized(def(), day(), "t.csv".into(), Box::new(std::io::Cursor::new(export(10, 2))), no_size.clone());
    while rx.recv().await.is_some() {}
    handle.await.unwrap().unwrap();
    assert_eq!(no_size.get(), None);
}

#[tokio::test]
async fn blank_lines_are_counted_and_an_open_quote_breaks_only_its_line() {
    let input = format!(
        "{h}\n{GOOD}\n\n  \t\n{open}\n{next}\n\r\n",
        h = header(),
        open = GOOD.replacen("a1,", "a2,", 1).replacen("\"[0, 4]\"", "\"[0, 4", 1),
        next = GOOD.replacen("a1,", "a3,", 1)
    );
    let (mut rx, handle) = start(def(), day(), "t.csv".into(), Box::new(std::io::Cursor::new(input.into_bytes())));
    let mut rows = 0;
    while let Some(batch) = rx.recv().await {
        rows += batch.num_rows();
    }
    let summary = handle.await.unwrap().unwrap();
    assert_eq!(summary.rows_read, 6, "every line after the header");
    assert_eq!(summary.blank_lines, 3);
    assert_eq!(summary.line_rejects.len(), 1);
    assert_eq!(summary.line_rejects[0].line, 5);
    assert!(summary.line_rejects[0].reason.contains("unterminated quote"), "{:?}", summary.line_rejects);
    assert_eq!(rows, 2, "the lines before and after the open quote are read");
}

#[tokio::test]
async fn reads_values_and_keeps_bad_ones_for_later() {
    let header = def().export_columns().map(|c| c.name.as_str()).collect::<Vec<_>>().join(",");
    let good = "a1,shop.myshopify.com,APP,True,False,3,\"[0, 4]\",true,false,1,0,2.0,True,False,True,False,True,False,shopify_,False,app_store,2019-04-01";
    let bad_flag = good.replacen("a1,", "a2,", 1).replacen("True,False,3", "Maybe,False,3", 1);
    let short = "a3,too,short";
    let input = format!("\u{feff}{header}\r\n{good}\r\n{bad_flag}\r\n{short}\r\n");
    let day = NaiveDate::from_ymd_opt(2019, 4, 1).unwrap();
    let (mut rx, handle) = start(def(), day, "test.csv".into(), Box::new(std::io::Cursor::new(input.into_bytes())));
    let batch = rx.recv().await.unwrap();
    assert!(rx.recv().await.is_none());
    let summary = handle.await.unwrap().unwrap();
    assert_eq!(summary.rows_read, 3);
    assert_eq!(summary.line_rejects.len(), 1);
    assert_eq!(summary.line_rejects[0].line, 4);
    assert_eq!(summary.line_rejects[0].reason, "expected 22 fields, found 3");
    assert_eq!(batch.num_rows(), 2);
    let reject = batch.column_by_name(REJECT).unwrap().as_string::<i32>();
    assert!(reject.is_null(0));
    assert_eq!(reject.value(1), "autocomplete_enabled: 'Maybe' is not a boolean");
    let raw = batch.column_by_name(RAW).unwrap().as_string::<i32>();
    assert!(raw.value(1).starts_with("a2,shop"));
    let lists = batch.column_by_name("nbrs_pinned_items").unwrap().as_list::<i32>();
    assert_eq!(lists.value(0).as_primitive::<datafusion::arrow::datatypes::Int64Type>().values(), &[0, 4]);
    let counts =
        batch.column_by_name("nbr_metafields").unwrap().as_primitive::<datafusion::arrow::datatypes::Int64Type>();
    assert_eq!(counts.value(0), 2);
}

#[tokio::test]
async fn values_reasons_and_lines_stay_with_their_rows_across_groups() {
    // Enough lines for several groups of records parsed column by column,
    // with line rejects, bad values and quoted fields among them.
    let names: Vec<&str> = def().export_columns().map(|c| c.name.as_str()).collect();
    let mut input = header();
    input.push('\n');
    for i in 0..5_000 {
        if i % 5 == 4 {
            input.push_str(&format!("s{i},too,short\n"));
            continue;
        }
        let mut fields: Vec<String> = GOOD.replacen("\"[0, 4]\"", "[0 4]", 1).split(',').map(String::from).collect();
        fields[0] = format!("s{i}");
        fields[6] = "\"[0, 4]\"".into();
        if i % 7 == 3 {
            fields[3] = "Maybe".into();
        }
        if i % 11 == 5 {
            fields[5] = "x3".into();
        }
        if i % 13 == 6 {
            fields[18] = "\"sh\"\"op\"".into();
        }
        input.push_str(&fields.join(","));
        input.push('\n');
    }
    let (mut rx, handle) = start(def(), day(), "t.csv".into(), Box::new(std::io::Cursor::new(input.into_bytes())));
    let mut seen = Vec::new();
    while let Some(batch) = rx.recv().await {
        let ids = batch.column_by_name(names[0]).unwrap().as_string::<i32>();
        let prefixes = batch.column_by_name(names[18]).unwrap().as_string::<i32>();
        let lines = batch.column_by_name(LINE).unwrap().as_primitive::<datafusion::arrow::datatypes::UInt64Type>();
        let rejects = batch.column_by_name(REJECT).unwrap().as_string::<i32>();
        let raws = batch.column_by_name(RAW).unwrap().as_string::<i32>();
        for row in 0..batch.num_rows() {
            let i: u64 = ids.value(row)[1..].parse().unwrap();
            assert_eq!(lines.value(row), i + 2, "the header is line 1");
            let mut reasons = Vec::new();
            if i % 7 == 3 {
                reasons.push(format!("{}: 'Maybe' is not a boolean", names[3]));
            }
            if i % 11 == 5 {
                reasons.push(format!("{}: 'x3' is not an integer", names[5]));
            }
            match reasons.is_empty() {
                true => assert!(rejects.is_null(row) && raws.is_null(row), "line {i}"),
                false => {
                    assert_eq!(rejects.value(row), reasons.join("; "), "line {i}");
                    assert!(raws.value(row).starts_with(&format!("s{i},")), "line {i}");
                }
            }
            assert_eq!(prefixes.value(row), if i % 13 == 6 { "sh\"op" } else { "shopify_" }, "line {i}");
            seen.push(i);
        }
    }
    let summary = handle.await.unwrap().unwrap();
    seen.sort_unstable();
    assert_eq!(seen, (0..5_000).filter(|i| i % 5 != 4).collect::<Vec<u64>>(), "every good line once");
    assert_eq!(summary.line_rejects.len(), 1_000);
    assert!(summary.line_rejects.iter().all(|r| r.line % 5 == 1 && r.raw.ends_with(",too,short")));
}
