//! Wire enums: a declaration macro for numbered values that keeps the ones it has no name for
//! (smoltcp's `enum_with_unknown!`), and the name lookup that every named enum's `FromStr` uses.
//!
//! A [`wire_enum!`] declaration gives each variant its value and, optionally, its name; the
//! macro derives the conversions both ways, the names, `Display` and `FromStr`, so that no
//! other module keeps a name table of its own.

use core::fmt;

/// A name that none of an enum's values has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {name:?}; known {kind}s: {known}")]
pub struct UnknownName {
    /// What kind of value was asked for (`fault`, `fault status`, ...).
    pub kind: &'static str,
    /// What was asked for.
    pub name: String,
    /// The valid names, comma-separated.
    pub known: String,
}

impl UnknownName {
    /// The error for `name`, listing `known`.
    pub fn new<'a>(
        kind: &'static str,
        name: &str,
        known: impl IntoIterator<Item = &'a str>,
    ) -> UnknownName {
        UnknownName {
            kind,
            name: name.to_owned(),
            known: known.into_iter().collect::<Vec<_>>().join(", "),
        }
    }
}

/// Whether `given` spells `name`, ignoring ASCII case, `_`, `-` and surrounding blanks: the
/// vectors write `op_range_error` for the value named `OpRangeError` in Rust, and `serve
/// --fault` takes `wrong-hmac`.
pub fn same_name(given: &str, name: &str) -> bool {
    let fold = |s: &str| {
        s.trim()
            .bytes()
            .filter(|b| !matches!(b, b'_' | b'-'))
            .map(|b| b.to_ascii_lowercase())
            .collect::<Vec<u8>>()
    };
    fold(given) == fold(name)
}

/// The value among `all` whose name `given` spells (see [`same_name`]).
pub fn find_name<T: Copy>(given: &str, all: &[T], name: impl Fn(T) -> &'static str) -> Option<T> {
    all.iter().copied().find(|v| same_name(given, name(*v)))
}

/// A number as `0x`-prefixed hex or as decimal.
pub fn parse_number(s: &str) -> Option<u64> {
    let t = s.trim();
    match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => t.parse().ok(),
    }
}

/// Writes a value that has no name: `0x` and every hex digit of its width, upper-case, as the
/// reports print fault statuses (`0x1C0100FF`).
pub fn write_unknown(f: &mut fmt::Formatter<'_>, value: u64, bytes: usize) -> fmt::Result {
    write!(f, "0x{value:0width$X}", width = 2 * bytes)
}

/// Declares a wire enum that keeps values it does not know, so decoding never fails on them.
///
/// Each variant is `Name = value` or `Name = value => "name"`; without a name its identifier
/// is its name. The macro derives `From` both ways, `ALL`, `name()`, `from_name()`,
/// `Display` (the name, or `0x` and the value in upper-case hex when it has none; `{:#}` adds
/// the value to a name: `op_range_error (0x1C010002)`) and `FromStr` (a name as
/// [`same_name`] matches it, or a number).
macro_rules! wire_enum {
    (
        $(#[$attr:meta])*
        pub enum $name:ident($ty:ty) as $kind:literal {
            $( $(#[$vattr:meta])* $variant:ident = $value:expr $(=> $vname:literal)?, )+
        }
    ) => {
        $(#[$attr])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
        pub enum $name {
            $( $(#[$vattr])* $variant, )+
            /// A value this crate has no name for.
            Unknown($ty),
        }

        impl From<$ty> for $name {
            fn from(v: $ty) -> Self {
                match v {
                    $( $value => $name::$variant, )+
                    other => $name::Unknown(other),
                }
            }
        }

        impl From<$name> for $ty {
            fn from(v: $name) -> Self {
                match v {
                    $( $name::$variant => $value, )+
                    $name::Unknown(other) => other,
                }
            }
        }

        impl $name {
            /// Every named value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The name of a known value; `None` for [`Self::Unknown`].
            pub const fn name(self) -> Option<&'static str> {
                match self {
                    $( $name::$variant => Some($crate::wire::enums::wire_enum!(@name $variant $($vname)?)), )+
                    $name::Unknown(_) => None,
                }
            }

            /// The value a name stands for (numbers are not names; `FromStr` takes both).
            pub fn from_name(s: &str) -> Option<$name> {
                $crate::wire::enums::find_name(s, Self::ALL, |v| v.name().unwrap_or(""))
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                let value = u64::from(<$ty>::from(*self));
                let width = core::mem::size_of::<$ty>();
                match self.name() {
                    Some(n) if f.alternate() => {
                        write!(f, "{n} (")?;
                        $crate::wire::enums::write_unknown(f, value, width)?;
                        f.write_str(")")
                    }
                    Some(n) => f.write_str(n),
                    None => $crate::wire::enums::write_unknown(f, value, width),
                }
            }
        }

        impl core::str::FromStr for $name {
            type Err = $crate::wire::enums::UnknownName;
            fn from_str(s: &str) -> core::result::Result<$name, Self::Err> {
                $name::from_name(s)
                    .or_else(|| {
                        $crate::wire::enums::parse_number(s)
                            .and_then(|n| <$ty>::try_from(n).ok())
                            .map($name::from)
                    })
                    .ok_or_else(|| {
                        $crate::wire::enums::UnknownName::new(
                            $kind,
                            s,
                            Self::ALL.iter().filter_map(|v| v.name()),
                        )
                    })
            }
        }
    };
    (@name $variant:ident $vname:literal) => { $vname };
    (@name $variant:ident) => { stringify!($variant) };
}

pub(crate) use wire_enum;

#[cfg(test)]
mod test {
    use super::*;

    wire_enum! {
        /// A test enum.
        pub enum Sample(u16) as "sample" {
            /// Named after its identifier.
            FirstOne = 1,
            /// Named explicitly.
            Second = 2 => "second_value",
        }
    }

    #[test]
    fn test_names() {
        assert_eq!(Sample::from(1), Sample::FirstOne);
        assert_eq!(u16::from(Sample::Unknown(7)), 7);
        assert_eq!(Sample::FirstOne.to_string(), "FirstOne");
        assert_eq!(Sample::Second.to_string(), "second_value");
        assert_eq!(Sample::Unknown(0x2a).to_string(), "0x002A");
        assert_eq!(format!("{:#}", Sample::Second), "second_value (0x0002)");
        assert_eq!(format!("{:#}", Sample::Unknown(0x2a)), "0x002A");
        assert_eq!("first_one".parse(), Ok(Sample::FirstOne));
        assert_eq!("SecondValue".parse(), Ok(Sample::Second));
        assert_eq!("0x2a".parse(), Ok(Sample::Unknown(0x2a)));
        assert_eq!("2".parse(), Ok(Sample::Second));
        assert_eq!(Sample::from_name("2"), None);
        let err = "70000".parse::<Sample>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown sample \"70000\"; known samples: FirstOne, second_value"
        );
    }

    #[test]
    fn test_same_name() {
        assert!(same_name(" wrong-hmac", "wrong-hmac"));
        assert!(same_name("op_range_error", "OpRangeError"));
        assert!(!same_name("op_range", "OpRangeError"));
    }
}
