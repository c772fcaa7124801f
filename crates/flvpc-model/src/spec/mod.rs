//! The cluster spec (footloose.yaml compatible). Being written.
