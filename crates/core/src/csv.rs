//! CSV cells that are safe to open in a spreadsheet.

use std::borrow::Cow;

/// Neutralise a cell against formula injection (OWASP "CSV injection"): a cell that starts
/// with `=`, `+`, `-`, `@`, tab or carriage return gets a leading `'`, so spreadsheets show
/// it as text instead of running it. JSON outputs keep exact values; only CSV does this.
pub fn safe_cell(cell: &str) -> Cow<'_, str> {
    match cell.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => Cow::Owned(format!("'{cell}")),
        _ => Cow::Borrowed(cell),
    }
}

#[cfg(test)]
mod tests {
    use super::safe_cell;

    #[test]
    fn neutralises_formula_starts_only() {
        for bad in ["=SUM(A1)", "+1", "-1", "@cmd", "\tx", "\rx"] {
            assert_eq!(safe_cell(bad), format!("'{bad}"));
        }
        for ok in ["", "gpt-4", "a=b", "0.7"] {
            assert_eq!(safe_cell(ok), ok);
        }
    }
}
