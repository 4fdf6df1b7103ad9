//! Path expectations: a file that says which rules, routes, namespaces,
//! devices and ends some packets must show (`file`), checked against their
//! journeys (`check`), with verdicts people and CI systems act on
//! (`verdicts`). The same for a live run and a capture: the binary crate
//! selects each expectation's journeys with its filter and hands them here.

pub mod check;
pub mod file;
pub mod verdicts;

pub use check::{check, Broken, Scope, Status, Verdict};
pub use file::{parse, Count, EndSpec, Expectation, Expectations, FileError, Place, Target};
pub use verdicts::Summary;
