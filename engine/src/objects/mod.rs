//! One module per kernel object kind, each holding its image records, its
//! dump side and its restore side together. Adding an object kind means one
//! file here and one line in the registry.
