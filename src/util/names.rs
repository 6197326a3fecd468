//! One name table per enum: [`named_enum!`] defines an enum from `Variant => "name"` pairs and
//! derives from that one table its `name()`, `from_name`, `ALL`, `Display`, `FromStr`, serde
//! (by name) and, with the `cli` feature, clap's `ValueEnum` (the variants' doc comments become
//! the possible values' help). Names cannot disagree between configs, records and flags.

/// An unknown name for an enum of [`named_enum!`], with the names it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownName {
    pub kind: &'static str,
    pub name: String,
    pub expected: Vec<&'static str>,
}

impl std::fmt::Display for UnknownName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "unknown {} {:?} (expected one of: {})",
            self.kind,
            self.name,
            self.expected.join(", ")
        )
    }
}

impl std::error::Error for UnknownName {}

/// Define an enum whose every variant has one name. `kind` names the enum in errors.
#[macro_export]
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident ($kind:literal) {
            $( $(#[doc = $doc:literal])* $variant:ident => $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[doc = $doc])* $variant, )+
        }

        impl $name {
            /// Every variant, in the order of the name table.
            pub const ALL: [$name; [$($text),+].len()] = [$($name::$variant),+];

            /// The name configs, records and flags use.
            pub fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The variant of a name (exact match).
            pub fn from_name(name: &str) -> Option<Self> {
                Self::ALL.into_iter().find(|v| v.name() == name)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::util::names::UnknownName;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::from_name(s).ok_or_else(|| $crate::util::names::UnknownName {
                    kind: $kind,
                    name: s.to_string(),
                    expected: Self::ALL.iter().map(|v| v.name()).collect(),
                })
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.name())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let name = String::deserialize(deserializer)?;
                name.parse().map_err(serde::de::Error::custom)
            }
        }

        #[cfg(feature = "cli")]
        impl clap::ValueEnum for $name {
            fn value_variants<'a>() -> &'a [Self] {
                &Self::ALL
            }

            fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
                Some(match self {
                    $($name::$variant => clap::builder::PossibleValue::new($text)
                        .help(concat!($($doc, "\n"),*).trim()),)+
                })
            }
        }
    };
}

#[cfg(test)]
mod tests {
    crate::named_enum! {
        /// A test enum.
        pub enum Fruit ("fruit") {
            /// A red one.
            Apple => "apple",
            /// Long and
            /// yellow.
            BigBanana => "big-banana",
        }
    }

    #[test]
    fn one_table_gives_every_name() {
        assert_eq!(Fruit::ALL, [Fruit::Apple, Fruit::BigBanana]);
        for fruit in Fruit::ALL {
            let name = fruit.name();
            assert_eq!(fruit.to_string(), name);
            assert_eq!(name.parse::<Fruit>(), Ok(fruit));
            assert_eq!(
                serde_json::to_string(&fruit).unwrap(),
                format!("\"{name}\"")
            );
            assert_eq!(
                serde_json::from_str::<Fruit>(&format!("\"{name}\"")).unwrap(),
                fruit
            );
        }
        let error = "pear".parse::<Fruit>().unwrap_err().to_string();
        assert_eq!(
            error,
            "unknown fruit \"pear\" (expected one of: apple, big-banana)"
        );
        assert!(serde_json::from_str::<Fruit>("\"BigBanana\"").is_err());
    }

    #[cfg(feature = "cli")]
    #[test]
    fn clap_uses_the_same_names_and_the_doc_comments() {
        use clap::ValueEnum;
        let value = Fruit::BigBanana.to_possible_value().unwrap();
        assert_eq!(value.get_name(), "big-banana");
        assert_eq!(value.get_help().unwrap().to_string(), "Long and\n yellow.");
        assert_eq!(Fruit::from_str("apple", false), Ok(Fruit::Apple));
    }
}
