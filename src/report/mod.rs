//! Printers: text for people, JSON for machines, generic over the writer.

pub mod activate;
pub mod conform;
pub mod inspect;
pub mod load;
pub mod replay;
