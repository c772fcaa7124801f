//! Host access (Docker, images). Being written.
