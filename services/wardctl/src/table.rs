//! A tiny aligned-text table and key/value printer.
//!
//! Columns are as wide as their widest cell, separated by two spaces, with
//! no trailing blanks. Cells are flattened to one line (control characters
//! become spaces) so a stray newline in a name cannot break the layout, and
//! every column but the last is cut at [`MAX_CELL`] characters (or the
//! table's own limit) with `…`.

/// Widest a cell of a non-final column may be, unless the table says otherwise.
pub const MAX_CELL: usize = 40;

/// Rows under a header line.
#[derive(Debug, Clone)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
    max_cell: usize,
}

impl Table {
    /// A table with these column headers.
    pub fn new<S: AsRef<str>>(headers: &[S]) -> Self {
        Self {
            headers: headers.iter().map(|h| h.as_ref().to_owned()).collect(),
            rows: Vec::new(),
            max_cell: MAX_CELL,
        }
    }

    /// A table whose headers are `headers` split at `|`: `"NUMBER|PRI|ACK BY"`.
    pub fn of(headers: &str) -> Self {
        Self::new(&headers.split('|').collect::<Vec<_>>())
    }

    /// Cuts non-final cells at `max` characters instead of [`MAX_CELL`].
    pub fn max_cell(mut self, max: usize) -> Self {
        self.max_cell = max.max(1);
        self
    }

    /// Appends a row; missing cells are blank, extra cells are dropped.
    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut row: Vec<String> = cells
            .into_iter()
            .map(Into::into)
            .take(self.headers.len())
            .collect();
        row.resize(self.headers.len(), String::new());
        self.rows.push(row);
    }

    /// True without rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// The table as text, one line per row, each ending in `\n`.
    pub fn render(&self) -> String {
        let last = self.headers.len().saturating_sub(1);
        let prepare = |i: usize, s: &str| {
            let flat = flatten(s);
            if i < last {
                truncate(&flat, self.max_cell)
            } else {
                flat
            }
        };
        let lines: Vec<Vec<String>> = std::iter::once(&self.headers)
            .chain(&self.rows)
            .map(|r| r.iter().enumerate().map(|(i, c)| prepare(i, c)).collect())
            .collect();
        let mut widths = vec![0; self.headers.len()];
        for line in &lines {
            for (w, cell) in widths.iter_mut().zip(line) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for line in &lines {
            let mut text = String::new();
            for (i, cell) in line.iter().enumerate() {
                if i > 0 {
                    text.push_str("  ");
                }
                text.push_str(cell);
                if i < last {
                    text.extend(std::iter::repeat_n(' ', widths[i] - cell.chars().count()));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `key: value` lines with the values aligned; values are not truncated but
/// are flattened to one line.
pub fn key_values<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    let width = pairs
        .iter()
        .map(|(k, _)| k.as_ref().chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (k, v) in pairs {
        let k = k.as_ref();
        let pad = width - k.chars().count();
        let line = format!("{k}:{}  {}", " ".repeat(pad), flatten(v.as_ref()));
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn flatten(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_without_trailing_blanks() {
        let mut t = Table::new(&["NUMBER", "PRI", "STATUS"]);
        t.row(["STM-000001", "P1", "new"]);
        t.row(["LKS-12", "P4", ""]);
        assert_eq!(
            t.render(),
            "NUMBER      PRI  STATUS\n\
             STM-000001  P1   new\n\
             LKS-12      P4\n"
        );
        assert_eq!(t.len(), 2);
        assert!(!t.is_empty());
    }

    #[test]
    fn rows_are_padded_or_cut_to_the_header() {
        let mut t = Table::new(&["A", "B"]);
        t.row(["only-a"]);
        t.row(["1", "2", "dropped"]);
        assert_eq!(t.render(), "A       B\nonly-a\n1       2\n");
    }

    #[test]
    fn cells_are_flattened_and_long_ones_cut_except_the_last() {
        let long = "x".repeat(MAX_CELL + 10);
        let mut t = Table::new(&["NAME", "BODY"]);
        t.row([
            format!("St Mary's\nRegional{long}"),
            format!("line one\nline two {long}"),
        ]);
        let out = t.render();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        let name: String = lines[1].chars().take(MAX_CELL).collect();
        assert!(name.starts_with("St Mary's Regional"));
        assert!(name.ends_with('…'));
        assert!(lines[1].ends_with(&format!("line one line two {long}")));
    }

    #[test]
    fn the_cut_is_configurable() {
        let mut t = Table::new(&["A", "B"]).max_cell(4);
        t.row(["abcdef", "x"]);
        assert_eq!(t.render(), "A     B\nabc…  x\n");
    }

    #[test]
    fn widths_count_characters_not_bytes() {
        let mut t = Table::new(&["NAME", "X"]);
        t.row(["Zoë", "1"]);
        t.row(["Bob", "2"]);
        assert_eq!(t.render(), "NAME  X\nZoë   1\nBob   2\n");
    }

    #[test]
    fn an_empty_table_is_just_the_header() {
        assert_eq!(Table::new(&["A", "B"]).render(), "A  B\n");
        assert!(Table::new(&["A"]).is_empty());
    }

    #[test]
    fn key_values_align() {
        let out = key_values(&[
            ("number", "STM-000001"),
            ("priority", "P1"),
            ("assignee", ""),
        ]);
        assert_eq!(out, "number:    STM-000001\npriority:  P1\nassignee:\n");
    }
}
