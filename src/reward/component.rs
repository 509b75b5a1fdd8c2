//! The reward components by name. One enum instead of string literals in the engine, the
//! request's validation, the config checks and the metrics: a misspelt component is a compile
//! error, and the wire names live in one place ([`Component::as_str`]).

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// A reward component, as named in a request's `rewards`, the config's `[rewards]` maps, a
/// result's `components` and `errors`, and the `component` metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Component {
    /// The PSR reward: each subject's crop against its reference.
    SubjectConsistency,
    /// The VLM judge's score of the image against its prompt.
    SemanticAlignment,
    /// An aesthetic or preference scorer's score.
    Aesthetic,
    /// The prompt's spatial relation checked on the first two subjects' boxes.
    Position,
}

impl Component {
    /// Every component, in the order error messages list them.
    pub const ALL: [Component; 4] = [
        Component::SubjectConsistency,
        Component::SemanticAlignment,
        Component::Aesthetic,
        Component::Position,
    ];

    /// The wire name (snake_case), identical in JSON, TOML, protobuf maps and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Component::SubjectConsistency => "subject_consistency",
            Component::SemanticAlignment => "semantic_alignment",
            Component::Aesthetic => "aesthetic",
            Component::Position => "position",
        }
    }

    /// The names of [`Component::ALL`], comma separated (for error messages).
    pub fn known() -> String {
        Self::ALL.map(Component::as_str).join(", ")
    }
}

/// Components order by name, so that maps keyed by them serialize their keys in the same
/// order as maps keyed by the names did (the wire JSON stays byte-identical), and
/// [`super::combine`] adds weighted scores in the same order (rewards stay bit-identical).
impl Ord for Component {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialOrd for Component {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is none of the components.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown component `{0}`")]
pub struct UnknownComponent(pub String);

impl FromStr for Component {
    type Err = UnknownComponent;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownComponent(s.to_string()))
    }
}

impl Serialize for Component {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// What an entry of an item's `errors` is about: a component without a score, or the
/// explanation (drawn by the HTTP route after scoring) that could not be drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKey {
    /// A component that failed or could not be scored.
    Component(Component),
    /// The item's explanation (`"explain": true`).
    Explanation,
}

impl ErrorKey {
    /// The key as written in `errors`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKey::Component(c) => c.as_str(),
            ErrorKey::Explanation => "explanation",
        }
    }
}

impl From<Component> for ErrorKey {
    fn from(c: Component) -> Self {
        ErrorKey::Component(c)
    }
}

/// By name, as [`Component`]'s order: `errors` keeps its key order on the wire.
impl Ord for ErrorKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialOrd for ErrorKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Serialize for ErrorKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for c in Component::ALL {
            assert_eq!(c.as_str().parse::<Component>(), Ok(c));
        }
        assert_eq!(
            "beauty".parse::<Component>(),
            Err(UnknownComponent("beauty".into()))
        );
        assert_eq!(
            Component::known(),
            "subject_consistency, semantic_alignment, aesthetic, position"
        );
    }

    /// A map keyed by components writes the same JSON, keys in the same order, as one keyed
    /// by their names.
    #[test]
    fn maps_keyed_by_component_serialize_as_maps_keyed_by_name() {
        let by_component: BTreeMap<ErrorKey, u8> = [
            ErrorKey::Component(Component::SubjectConsistency),
            ErrorKey::Component(Component::Position),
            ErrorKey::Explanation,
            ErrorKey::Component(Component::SemanticAlignment),
            ErrorKey::Component(Component::Aesthetic),
        ]
        .into_iter()
        .zip(0..)
        .collect();
        let by_name: BTreeMap<&str, u8> =
            by_component.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(
            serde_json::to_string(&by_component).unwrap(),
            serde_json::to_string(&by_name).unwrap()
        );
        assert_eq!(
            serde_json::to_string(&by_name).unwrap(),
            r#"{"aesthetic":4,"explanation":2,"position":1,"semantic_alignment":3,"subject_consistency":0}"#
        );
    }
}
