//! The printed result of a run: sections of counts and checks. A check carries the count it
//! judged and, when it failed, evidence (order numbers, log rows) to start from.

use std::fmt;

#[derive(Clone, Debug)]
pub enum Line {
    /// A number (or short text) worth printing, judged by nothing.
    Count {
        label: String,
        value: String,
    },
    /// A count an invariant requires, and whether it held.
    Check {
        label: String,
        value: String,
        passed: bool,
        evidence: Vec<String>,
    },
    Note(String),
}

#[derive(Clone, Debug)]
pub struct Section {
    pub title: String,
    pub lines: Vec<Line>,
}

impl Section {
    pub(crate) fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            lines: Vec::new(),
        }
    }

    pub(crate) fn count(&mut self, label: impl Into<String>, value: impl fmt::Display) {
        self.lines.push(Line::Count {
            label: label.into(),
            value: value.to_string(),
        });
    }

    pub(crate) fn note(&mut self, text: impl Into<String>) {
        self.lines.push(Line::Note(text.into()));
    }

    /// A check that `value` is zero.
    pub(crate) fn zero(&mut self, label: impl Into<String>, value: i64, evidence: Vec<String>) {
        self.check(label, value == 0, value, evidence);
    }

    pub(crate) fn check(
        &mut self,
        label: impl Into<String>,
        passed: bool,
        value: impl fmt::Display,
        evidence: Vec<String>,
    ) {
        self.lines.push(Line::Check {
            label: label.into(),
            value: value.to_string(),
            passed,
            evidence: if passed { Vec::new() } else { evidence },
        });
    }
}

/// Everything a run found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub header: Vec<String>,
    pub sections: Vec<Section>,
}

impl Report {
    /// The checks that failed, as `section: label = value`.
    pub fn failures(&self) -> Vec<String> {
        self.sections
            .iter()
            .flat_map(|section| {
                section.lines.iter().filter_map(move |line| match line {
                    Line::Check {
                        label,
                        value,
                        passed: false,
                        ..
                    } => Some(format!("{}: {label} = {value}", section.title)),
                    _ => None,
                })
            })
            .collect()
    }

    pub fn passed(&self) -> bool {
        self.failures().is_empty()
    }
}

/// Width of the label column.
const LABEL_WIDTH: usize = 72;

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.header {
            writeln!(f, "{line}")?;
        }
        for section in &self.sections {
            writeln!(f)?;
            writeln!(f, "{}", section.title)?;
            for line in &section.lines {
                match line {
                    Line::Count { label, value } => {
                        writeln!(f, "        {label:.<LABEL_WIDTH$} {value}")?;
                    }
                    Line::Check {
                        label,
                        value,
                        passed,
                        evidence,
                    } => {
                        let verdict = if *passed { "ok  " } else { "FAIL" };
                        writeln!(f, "  {verdict}  {label:.<LABEL_WIDTH$} {value}")?;
                        for item in evidence {
                            writeln!(f, "              {item}")?;
                        }
                    }
                    Line::Note(text) => writeln!(f, "        {text}")?,
                }
            }
        }
        let failures = self.failures();
        writeln!(f)?;
        if failures.is_empty() {
            writeln!(f, "every invariant held")
        } else {
            writeln!(f, "{} check(s) FAILED:", failures.len())?;
            for failure in failures {
                writeln!(f, "  - {failure}")?;
            }
            Ok(())
        }
    }
}
