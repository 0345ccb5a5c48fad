//! CSV node inventories as spreadsheets write them (RFC 4180): fields separated by `,`,
//! optionally in double quotes. A quoted field may contain `,` and line breaks, and
//! writes each quote in it as `""`. Records end with LF, CRLF or CR, the last one
//! optionally. The caller removes a leading byte-order mark. Lines starting with `#` are
//! comments, and blank lines and rows of empty fields are skipped.

use super::InventoryError;
use crate::manifest::RawNode;
use crate::model::hint;

const COLUMNS: [&str; 4] = ["name", "ips", "dns", "roles"];

/// One field with the 1-based line and column of its first character (the opening
/// quote of a quoted field).
struct Field {
    value: String,
    line: usize,
    column: usize,
}

struct Record {
    fields: Vec<Field>,
    /// Line and column just past the last field, where a missing field would go.
    end: (usize, usize),
}

impl Record {
    fn line(&self) -> usize {
        self.fields[0].line
    }

    fn is_blank(&self) -> bool {
        self.fields.iter().all(|f| f.value.is_empty())
    }
}

/// A position in the text that counts lines and columns (in characters) as it moves.
struct Cursor<'a> {
    text: &'a str,
    offset: usize,
    line: usize,
    column: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<char> {
        self.text[self.offset..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.offset += c.len_utf8();
        let crlf = c == '\r' && self.peek() == Some('\n');
        if (c == '\n' || c == '\r') && !crlf {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn at_record_end(&self) -> bool {
        matches!(self.peek(), None | Some('\n' | '\r'))
    }

    /// Returns the text from the cursor to the end of its line.
    fn rest_of_line(&self) -> &str {
        let rest = &self.text[self.offset..];
        rest.split(['\n', '\r']).next().unwrap_or(rest)
    }

    fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.bump();
        }
    }

    fn skip_line(&mut self) {
        while !self.at_record_end() {
            self.bump();
        }
        if self.bump() == Some('\r') && self.peek() == Some('\n') {
            self.bump();
        }
    }
}

/// Parses a CSV inventory into (field path, node) pairs whose paths name the file and
/// the line of the row, such as `nodes.csv:12`. Several values in the `ips`, `dns` and
/// `roles` fields are separated by white space, `;` or `,`.
pub(super) fn parse(text: &str, file: &str) -> Result<Vec<(String, RawNode)>, Vec<InventoryError>> {
    let mut records = read_records(text, file).map_err(|e| vec![e])?.into_iter();
    let Some(header) = records.next() else {
        return Ok(Vec::new());
    };
    let columns = read_header(&header, file)?;
    let header_line = header.line();
    let mut nodes = Vec::new();
    let mut errors = Vec::new();
    for record in records {
        if let Err(error) = check_field_count(&record, &columns, header_line, file) {
            errors.push(error);
            continue;
        }
        nodes.push((format!("{file}:{}", record.line()), node(&columns, record)));
    }
    if errors.is_empty() {
        Ok(nodes)
    } else {
        Err(errors)
    }
}

fn node(columns: &[&'static str], record: Record) -> RawNode {
    let mut node = RawNode {
        name: String::new(),
        ips: Vec::new(),
        dns: Vec::new(),
        roles: None,
    };
    for (column, field) in columns.iter().zip(record.fields) {
        let values: Vec<String> = field
            .value
            .split(|c: char| c.is_whitespace() || c == ';' || c == ',')
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .collect();
        match *column {
            "name" => node.name = field.value,
            "ips" => node.ips = values,
            "dns" => node.dns = values,
            _ => node.roles = (!values.is_empty()).then_some(values),
        }
    }
    node
}

/// Reads every record that is not a comment, a blank line or a row of empty fields.
fn read_records(text: &str, file: &str) -> Result<Vec<Record>, InventoryError> {
    let mut cursor = Cursor {
        text,
        offset: 0,
        line: 1,
        column: 1,
    };
    let mut records = Vec::new();
    while cursor.peek().is_some() {
        if cursor.rest_of_line().trim_start().starts_with('#') {
            cursor.skip_line();
            continue;
        }
        let header = records.first();
        let record = read_record(&mut cursor, header, file)?;
        if !record.is_blank() {
            records.push(record);
        }
    }
    Ok(records)
}

fn read_record(
    cursor: &mut Cursor,
    header: Option<&Record>,
    file: &str,
) -> Result<Record, InventoryError> {
    let mut fields = Vec::new();
    loop {
        let name = field_name(header, fields.len());
        fields.push(read_field(cursor, &name, file)?);
        if cursor.peek() == Some(',') {
            cursor.bump();
            continue;
        }
        let end = (cursor.line, cursor.column);
        cursor.skip_line();
        return Ok(Record { fields, end });
    }
}

/// Returns how messages name the field at `index`: by its header column, or by its
/// number within the header and past the last column.
fn field_name(header: Option<&Record>, index: usize) -> String {
    match header.and_then(|h| h.fields.get(index)) {
        Some(column) => format!("field `{}`", column.value),
        None if header.is_none() => format!("header column {}", index + 1),
        None => format!("field {}", index + 1),
    }
}

fn read_field(cursor: &mut Cursor, name: &str, file: &str) -> Result<Field, InventoryError> {
    cursor.skip_blanks();
    let (line, column) = (cursor.line, cursor.column);
    if cursor.peek() != Some('"') {
        let mut value = String::new();
        while !cursor.at_record_end() && cursor.peek() != Some(',') {
            if cursor.peek() == Some('"') {
                return Err(InventoryError {
                    message: format!(
                        "{file}:{}:{}: {name} contains a quote but does not start with one: \
                         `{}`",
                        cursor.line,
                        cursor.column,
                        value + cursor.rest_of_line()
                    ),
                    help: "enclose the whole field in double quotes and write each quote \
                           inside it as `\"\"`"
                        .into(),
                });
            }
            value.extend(cursor.bump());
        }
        let value = value.trim_end().to_string();
        return Ok(Field {
            value,
            line,
            column,
        });
    }
    let opening = cursor.rest_of_line().to_string();
    cursor.bump();
    let mut value = String::new();
    loop {
        match cursor.bump() {
            Some('"') if cursor.peek() == Some('"') => {
                cursor.bump();
                value.push('"');
            }
            Some('"') => break,
            Some(c) => value.push(c),
            None => {
                return Err(InventoryError {
                    message: format!(
                        "{file}:{line}:{column}: {name} opens a quote that is never closed: \
                         `{opening}`"
                    ),
                    help: "close the quote at the end of the field, and write a quote \
                           inside a quoted field as `\"\"`"
                        .into(),
                });
            }
        }
    }
    cursor.skip_blanks();
    if !cursor.at_record_end() && cursor.peek() != Some(',') {
        return Err(InventoryError {
            message: format!(
                "{file}:{}:{}: {name} has `{}` after its closing quote",
                cursor.line,
                cursor.column,
                cursor.rest_of_line()
            ),
            help: "end the field at its closing quote with `,`, or move the text inside \
                   the quotes"
                .into(),
        });
    }
    Ok(Field {
        value: value.trim().to_string(),
        line,
        column,
    })
}

/// Returns the known column of each header field, or an error for each unknown, empty
/// or repeated column and for a missing `name` column.
fn read_header(header: &Record, file: &str) -> Result<Vec<&'static str>, Vec<InventoryError>> {
    let mut columns = Vec::new();
    let mut errors = Vec::new();
    for (index, field) in header.fields.iter().enumerate() {
        let at = format!("{file}:{}:{}", field.line, field.column);
        let text = field.value.to_lowercase();
        let Some(column) = COLUMNS.into_iter().find(|c| *c == text) else {
            errors.push(unknown_column(&at, index, &field.value));
            continue;
        };
        if columns.contains(&column) {
            errors.push(InventoryError {
                message: format!("{at}: column `{column}` appears twice in the header"),
                help: "remove one of the two columns, and put all values of the field in \
                       the other, separated by `;`"
                    .into(),
            });
        }
        columns.push(column);
    }
    if errors.is_empty() && !columns.contains(&"name") {
        errors.push(InventoryError {
            message: format!(
                "{file}:{}: the header has no `name` column: it names {}",
                header.line(),
                columns.join(", ")
            ),
            help: "add a `name` column with each node's name, as in the header \
                   `name,ips,dns,roles`"
                .into(),
        });
    }
    if errors.is_empty() {
        Ok(columns)
    } else {
        Err(errors)
    }
}

fn unknown_column(at: &str, index: usize, text: &str) -> InventoryError {
    if text.is_empty() {
        return InventoryError {
            message: format!("{at}: header column {} is empty", index + 1),
            help: format!(
                "name the column {}, or delete it with its field in every row",
                COLUMNS.join(", ")
            ),
        };
    }
    let help = if text.contains([';', '\t']) {
        "the header reads as one column because its fields are not separated by `,`: \
         save the sheet as CSV with fields separated by `,`"
            .into()
    } else {
        hint(&text.to_lowercase(), &COLUMNS)
    };
    InventoryError {
        message: format!("{at}: unknown column `{text}` in the header"),
        help,
    }
}

fn check_field_count(
    record: &Record,
    columns: &[&str],
    header_line: usize,
    file: &str,
) -> Result<(), InventoryError> {
    let count = record.fields.len();
    let expected = columns.len();
    let mismatch = format!(
        "the row has {count} fields, but the header on line {header_line} names {expected} \
         columns ({})",
        columns.join(", ")
    );
    if count > expected {
        let extra = &record.fields[expected];
        return Err(InventoryError {
            message: format!(
                "{file}:{}:{}: {mismatch}, and the first extra field is `{}`",
                extra.line, extra.column, extra.value
            ),
            help: "separate several values in one field with `;` or a space, and enclose a \
                   field that contains `,` in double quotes, such as \"192.0.2.1, 192.0.2.2\""
                .into(),
        });
    }
    if count < expected {
        let missing: Vec<String> = columns[count..].iter().map(|c| format!("`{c}`")).collect();
        let (line, column) = record.end;
        let missing = match missing.as_slice() {
            [one] => format!("column {one} is missing"),
            _ => format!("columns {} are missing", missing.join(", ")),
        };
        return Err(InventoryError {
            message: format!("{file}:{line}:{column}: {mismatch}, so {missing}"),
            help: "end the row with one `,` for each missing column, leaving the field empty \
                   where the node has no value"
                .into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(result: Result<Vec<(String, RawNode)>, Vec<InventoryError>>) -> Vec<String> {
        match result {
            Ok(_) => panic!("the CSV parsed"),
            Err(errors) => errors.into_iter().map(|e| e.message).collect(),
        }
    }

    #[test]
    fn csv_with_several_values() {
        let text = "name,ips,dns,roles\n# comment\nnode-1,192.0.2.1;2001:db8::1,n1.example.test,worker etcd\n";
        let nodes = parse(text, "nodes.csv").unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].0, "nodes.csv:3");
        assert_eq!(nodes[0].1.ips, vec!["192.0.2.1", "2001:db8::1"]);
        assert_eq!(
            nodes[0].1.roles,
            Some(vec!["worker".to_string(), "etcd".to_string()])
        );
    }

    #[test]
    fn quoted_fields_decoded() {
        let text = "name,dns,roles\n\"a \"\"b\"\"\" , \"x.test,y.test\",\"\"\n";
        let nodes = parse(text, "nodes.csv").unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].1.name, "a \"b\"");
        assert_eq!(nodes[0].1.dns, vec!["x.test", "y.test"]);
        assert_eq!(nodes[0].1.roles, None);
    }

    #[test]
    fn quoted_line_break_keeps_row_line() {
        let text = "name,ips\r\nnode-1,\"192.0.2.1\r\n2001:db8::1\"\r\nnode-2,192.0.2.2";
        let nodes = parse(text, "nodes.csv").unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[0].0, "nodes.csv:2");
        assert_eq!(nodes[0].1.ips, vec!["192.0.2.1", "2001:db8::1"]);
        assert_eq!(nodes[1].0, "nodes.csv:4");
    }

    #[test]
    fn cr_line_ends_counted() {
        let text = "name\rnode-1\r\rnode-2\r";
        let nodes = parse(text, "nodes.csv").unwrap();
        assert_eq!(nodes[0].0, "nodes.csv:2");
        assert_eq!(nodes[1].0, "nodes.csv:4");
    }

    #[test]
    fn empty_text_has_no_nodes() {
        assert!(parse("", "nodes.csv").unwrap().is_empty());
        assert!(parse("\r\n\r\n", "nodes.csv").unwrap().is_empty());
        assert!(parse("name,ips\n", "nodes.csv").unwrap().is_empty());
    }

    #[test]
    fn every_bad_row_reported() {
        let errors = messages(parse("name,ips\nnode-1\nnode-2,a,b\n", "nodes.csv"));
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].starts_with("nodes.csv:2:7:"), "{}", errors[0]);
        assert!(
            errors[0].ends_with("column `ips` is missing"),
            "{}",
            errors[0]
        );
        assert!(errors[1].starts_with("nodes.csv:3:10:"), "{}", errors[1]);
    }

    #[test]
    fn missing_columns_listed() {
        let errors = messages(parse("name,ips,dns\nnode-1\n", "nodes.csv"));
        assert!(
            errors[0].ends_with("columns `ips`, `dns` are missing"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn unterminated_quote_in_header_named() {
        let errors = messages(parse("name,\"ips\n", "nodes.csv"));
        assert_eq!(
            errors,
            vec![
                "nodes.csv:1:6: header column 2 opens a quote that is never closed: `\"ips`"
                    .to_string()
            ]
        );
    }

    #[test]
    fn empty_header_column_rejected() {
        let errors = messages(parse("name,,ips\n", "nodes.csv"));
        assert_eq!(
            errors,
            vec!["nodes.csv:1:6: header column 2 is empty".to_string()]
        );
    }

    #[test]
    fn header_matched_without_case() {
        let nodes = parse("Name,IPs\nnode-1,192.0.2.1\n", "nodes.csv").unwrap();
        assert_eq!(nodes[0].1.ips, vec!["192.0.2.1"]);
    }
}
