//! First parsing stage: Dockerfile text to a list of [`Node`]s with line
//! spans, parser directives, line continuations and heredocs.


