//! Verdicts written out: for people (a line per expectation, the journey
//! that broke one with the step where it diverged marked), as JSON, and as
//! JUnit XML for CI systems.

use std::io::Write;

use serde::Serialize;

use super::check::{step_words, Broken, Status, Verdict};
use super::file::Count;
use crate::journey::Journey;

/// The verdicts of one file, counted.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub expectations: usize,
    pub passed: usize,
    pub failed: usize,
    pub unchecked: usize,
    /// Journeys checked (all the run traced, or the capture held).
    pub journeys: usize,
}

impl Summary {
    pub fn of(verdicts: &[Verdict], journeys: usize) -> Summary {
        let n = |s: Status| verdicts.iter().filter(|v| v.status == s).count();
        Summary {
            expectations: verdicts.len(),
            passed: n(Status::Pass),
            failed: n(Status::Fail),
            unchecked: n(Status::Unchecked),
            journeys,
        }
    }

    /// Whether every expectation passed (exit 0).
    pub fn all_passed(&self) -> bool {
        self.passed == self.expectations
    }

    pub fn line(&self) -> String {
        let unchecked = match self.unchecked {
            0 => String::new(),
            n => format!(", {n} could not be checked"),
        };
        format!(
            "{} expectations: {} passed, {} failed{unchecked} ({} journeys)",
            self.expectations, self.passed, self.failed, self.journeys
        )
    }
}

const RESET: &str = "\x1b[0m";
const BOLD: &str = "\x1b[1m";
const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";

/// The verdicts for people: one line each; a failure with the journey
/// that broke it, its steps numbered, the step where it diverged marked.
pub fn text(
    out: &mut dyn Write,
    verdicts: &[Verdict],
    summary: &Summary,
    color: bool,
) -> std::io::Result<()> {
    let c = |code: &'static str| if color { code } else { "" };
    for v in verdicts {
        let (word, code) = match v.status {
            Status::Pass => ("PASS", GREEN),
            Status::Fail => ("FAIL", RED),
            Status::Unchecked => ("UNCHECKED", YELLOW),
        };
        let what = match (v.status, &v.why) {
            (Status::Pass, _) if v.count == Count::None => {
                format!("none of {} packets showed it", v.packets)
            }
            (Status::Pass, _) => format!("{} of {} packets showed it", v.showed, v.packets),
            (_, Some(why)) => why.clone(),
            (_, None) => String::new(),
        };
        writeln!(
            out,
            "{}{word}{} {}{}{} (line {}): {what}",
            c(code),
            c(RESET),
            c(BOLD),
            v.name,
            c(RESET),
            v.line
        )?;
        for b in &v.broken {
            broken(out, b)?;
        }
        let more = v.broken_total.saturating_sub(v.broken.len());
        if more > 0 {
            writeln!(out, "    ({more} more journeys broke it)")?;
        }
    }
    writeln!(out, "{}", summary.line())
}

fn broken(out: &mut dyn Write, b: &Broken) -> std::io::Result<()> {
    let j = &b.journey;
    writeln!(out, "    journey #{}: {}", j.id, title(j))?;
    writeln!(out, "      expected: {}", b.expected)?;
    writeln!(out, "      found:    {}", b.instead)?;
    if let Some(h) = &b.hint {
        writeln!(out, "      hint:     {h}")?;
    }
    for (i, s) in j.steps.iter().enumerate() {
        let mark = if Some(i) == b.step { ">" } else { " " };
        writeln!(out, "     {mark}{:>3} {}", i + 1, step_words(s))?;
    }
    Ok(())
}

fn title(j: &Journey) -> String {
    let packet = j.packet.as_deref().unwrap_or("a packet");
    format!("{packet}, {} bytes: {}", j.len, j.end.line())
}

/// The verdicts as one JSON document.
pub fn json(
    out: &mut dyn Write,
    file: &str,
    verdicts: &[Verdict],
    summary: &Summary,
) -> std::io::Result<()> {
    #[derive(Serialize)]
    struct Doc<'a> {
        file: &'a str,
        verdicts: &'a [Verdict],
        summary: &'a Summary,
    }
    serde_json::to_writer(
        &mut *out,
        &Doc {
            file,
            verdicts,
            summary,
        },
    )?;
    writeln!(out)
}

/// The verdicts as JUnit XML: a test suite named after the file, a test
/// case per expectation (unchecked ones skipped, with why).
pub fn junit(file: &str, verdicts: &[Verdict]) -> Result<String, quick_junit::SerializeError> {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let mut suite = TestSuite::new(file);
    for v in verdicts {
        let status = match v.status {
            Status::Pass => TestCaseStatus::success(),
            Status::Fail => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                s.set_message(v.why.clone().unwrap_or_default());
                let mut text = Vec::new();
                for b in &v.broken {
                    broken(&mut text, b).ok();
                }
                s.set_description(String::from_utf8_lossy(&text).into_owned());
                s
            }
            Status::Unchecked => {
                let mut s = TestCaseStatus::skipped();
                s.set_message(v.why.clone().unwrap_or_default());
                s
            }
        };
        let mut case = TestCase::new(v.name.as_str(), status);
        case.set_classname(format!("{file}:{}", v.line));
        suite.add_test_case(case);
    }
    let mut report = Report::new("pktpath expect");
    report.add_test_suite(suite);
    report.to_string()
}
